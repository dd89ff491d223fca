/**
 * The SMTP proxy: a shared listener whose sessions speak our SMTP front before login and relay bytes
 * to the account's upstream (Gmail, Exchange Online, ...) after it.
 */
import { hostname } from 'node:os';
import type { ListenerConfig } from '../../config/types.js';
import { createFrontServer } from '../shared/front-server.js';
import type { ProxyDeps, ProxyServer } from '../shared/types.js';
import { SmtpSession } from './session.js';

export interface SmtpServerOptions {
  /** Name in the greeting and EHLO reply; defaults to the host name. */
  serverName?: string;
}

export function createSmtpServer(
  listener: ListenerConfig,
  deps: ProxyDeps,
  options: SmtpServerOptions = {},
): ProxyServer {
  const serverName = options.serverName ?? hostname();
  return createFrontServer(
    'smtp',
    listener,
    deps,
    (socket, context, d) => new SmtpSession(socket, context, d, { serverName }),
  );
}

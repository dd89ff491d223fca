/**
 * SMTP as a protocol for the shared session: our own dialogue before AUTH, the account's upstream
 * (Gmail, Exchange Online, ...) after it.
 */
import { hostname } from 'node:os';
import type { ListenerConfig } from '../../config/types.js';
import { createProtocolServer, type Protocol } from '../shared/session.js';
import type { ProxyDeps, ProxyServer } from '../shared/types.js';
import { SmtpFront } from './front.js';
import type { SmtpAuthenticate } from './machine.js';
import { intersectExtensions } from '../shared/upstream-capabilities.js';
import { EHLO_PASS_THROUGH, REPLY } from './replies.js';
import { smtpUpstreamLogin, type SmtpUpstream } from './upstream.js';

export interface SmtpServerOptions {
  /** Name in the greeting and EHLO reply; defaults to the host name. */
  serverName?: string;
}

export function smtpProtocol(serverName: string): Protocol<SmtpUpstream, SmtpAuthenticate> {
  return {
    name: 'smtp',
    tlsCommand: 'STARTTLS',
    closeGraceMs: 5_000,
    // RFC 2920 clients stop at DATA and wait for 354, so this is never reached by an honest client.
    maxBufferDuringLogin: 64 * 1024,
    failedLoginIsOutcome: true,
    busyReply: REPLY.busy,
    front: (context, limits, deps) =>
      new SmtpFront(
        {
          serverName,
          tls: context.listener.tls,
          maxMessageSize: limits.maxMessageSize,
          // What is known now: a client's EHLO never waits for the network.
          upstream: intersectExtensions(deps.capabilities?.lists('smtp') ?? [], EHLO_PASS_THROUGH),
          maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
          maxFailedLogins: limits.maxFailedLogins,
        },
        limits.maxLineLength,
      ),
    upstreamLogin: (action, limits, deps) =>
      smtpUpstreamLogin({
        heloName: action.heloName,
        timeoutMs: limits.upstreamTimeoutMs,
        ...(deps.upstreamPool ? { pool: deps.upstreamPool } : {}),
      }),
  };
}

export function createSmtpServer(
  listener: ListenerConfig,
  deps: ProxyDeps,
  options: SmtpServerOptions = {},
): ProxyServer {
  return createProtocolServer(smtpProtocol(options.serverName ?? hostname()), listener, deps);
}

/**
 * The running proxy: opens the token store, starts the token manager and one server per configured
 * listener, and closes them all on shutdown. Wiring only; every piece lives in its own module.
 * (Stub: filled in by the lead as the proxies land.)
 */
import type { Logger } from 'pino';
import type { Config, Protocol, TlsMode } from './config/types.js';

export interface RunningListener {
  protocol: Protocol;
  host: string;
  port: number;
  tls: TlsMode;
}

export interface Daemon {
  listeners: RunningListener[];
  /** Base URL of the consent/admin web pages, when an HTTP listener runs. */
  httpUrl?: string;
  close(): Promise<void>;
}

export async function startDaemon(_config: Config, _logger: Logger): Promise<Daemon> {
  throw new Error('startDaemon is not wired yet');
}

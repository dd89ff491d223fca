/**
 * A protocol front as a ProxyServer: the shared listener, with one logger per listener whose binding
 * (`listener: "imap 127.0.0.1:1143"`) names protocol and address once. Session records carry
 * `protocol` and `session` themselves, so neither may be a binding (no key twice in a JSON line).
 */
import type { Socket } from 'node:net';
import type { ListenerConfig } from '../../config/types.js';
import { ProxyListener } from './listener.js';
import type { ConnectionContext, ProxyDeps, ProxyServer, ProxySession, SessionRecord } from './types.js';

export function createFrontServer(
  protocol: SessionRecord['protocol'],
  listener: ListenerConfig,
  deps: ProxyDeps,
  createSession: (socket: Socket, context: ConnectionContext, deps: ProxyDeps) => ProxySession,
): ProxyServer {
  const logger = deps.logger.child({ listener: `${protocol} ${listener.host}:${listener.port}` });
  const sessionDeps: ProxyDeps = { ...deps, logger };
  const limits = deps.config.settings?.limits;
  return new ProxyListener(
    listener,
    (socket, context) => createSession(socket, context, sessionDeps),
    logger,
    {
      ...(limits?.maxConnections !== undefined ? { maxConnections: limits.maxConnections } : {}),
      ...(limits?.maxConnectionsPerAddress !== undefined
        ? { maxConnectionsPerAddress: limits.maxConnectionsPerAddress }
        : {}),
      busyReply: BUSY_REPLY[protocol],
      onRefused: (reason) => deps.metrics?.connectionRefused?.(protocol, reason),
    },
  );
}

/** What a refused client reads: each protocol's "temporary, try again later" goodbye. */
export const BUSY_REPLY: Record<SessionRecord['protocol'], string> = {
  imap: '* BYE [UNAVAILABLE] Too many connections, try again later\r\n',
  smtp: '421 4.7.0 Too many connections, try again later\r\n',
  pop3: '-ERR [SYS/TEMP] Too many connections, try again later\r\n',
};

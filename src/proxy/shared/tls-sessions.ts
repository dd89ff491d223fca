/**
 * TLS session resumption to the upstreams: the last session ticket each upstream gave us is offered
 * on the next connection to it, which saves the certificate chain transfer and its verification (TLS
 * 1.2: a whole round trip). Keyed by host, port and extra CA, so a session verified under one trust
 * setting is never offered under another. Node checks a resumed session's stored verification result
 * and peer certificate like a fresh one (as its https Agent does with the same cache).
 */
import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { UpstreamServer } from '../../config/types.js';

/** Distinct upstreams remembered; the oldest goes first (the config names only a handful). */
const MAX_SESSIONS = 256;

const sessions = new Map<string, Buffer>();

export function tlsSessionKey(server: Pick<UpstreamServer, 'host' | 'port'>, ca: string | undefined): string {
  const caId = ca ? createHash('sha256').update(ca).digest('hex').slice(0, 16) : '-';
  return `${server.host}:${server.port} ${caId}`;
}

/** `tls.connect` options that offer the remembered session, if any. */
export function resumeOptions(key: string): { session?: Buffer } {
  const session = sessions.get(key);
  return session ? { session } : {};
}

/** Remembers every session (ticket) the server hands this socket; TLS 1.3 sends them after the handshake. */
export function rememberSessions(socket: TLSSocket, key: string): void {
  socket.on('session', (session: Buffer) => {
    sessions.delete(key);
    sessions.set(key, session);
    if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value as string);
  });
}

/** Forgets every session (tests). */
export function forgetTlsSessions(): void {
  sessions.clear();
}

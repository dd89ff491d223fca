/**
 * The one log line every session writes when it ends. Fields are whitelisted by the SessionRecord
 * type, so a password or token cannot slip in through a spread object.
 */
import type { Logger } from 'pino';
import type { SessionMetrics, SessionRecord } from './types.js';

/**
 * The end of every session: its log line and its metrics, from the one record (so the counters and
 * the log can never disagree). The metrics never see the user name or account.
 */
export function recordSessionEnd(
  logger: Logger,
  metrics: SessionMetrics | undefined,
  record: SessionRecord,
): void {
  logSessionEnd(logger, record);
  metrics?.sessionEnded(record);
}

export function logSessionEnd(logger: Logger, record: SessionRecord): void {
  const line = {
    protocol: record.protocol,
    session: record.session,
    client: record.client,
    ...(record.username !== undefined ? { username: record.username } : {}),
    ...(record.account !== undefined ? { account: record.account } : {}),
    ...(record.upstream !== undefined ? { upstream: record.upstream } : {}),
    bytesFromClient: record.bytesFromClient,
    bytesToClient: record.bytesToClient,
    durationMs: record.durationMs,
    outcome: record.outcome,
    ...(record.reason !== undefined ? { reason: record.reason } : {}),
    ...(record.messagesSent !== undefined ? { messagesSent: record.messagesSent } : {}),
    ...(record.messagesRefused !== undefined ? { messagesRefused: record.messagesRefused } : {}),
  };
  const failed = record.outcome === 'error' || record.outcome === 'upstream-unavailable';
  if (failed) logger.warn(line, 'session end');
  else logger.info(line, 'session end');
}

/** Formats a client address for logs: IPv6 in brackets. */
export function formatAddress(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

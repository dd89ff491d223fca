import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import { formatAddress, logSessionEnd } from '../../../src/proxy/shared/session-log.js';
import type { SessionRecord } from '../../../src/proxy/shared/types.js';

function capture(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ base: undefined }, sink), lines };
}

describe('logSessionEnd', () => {
  it('writes exactly the whitelisted fields, even if a caller smuggles in a secret', () => {
    const { logger, lines } = capture();
    const record = {
      protocol: 'imap',
      session: 'ab12',
      client: '127.0.0.1:5000',
      account: 'a@example.com',
      upstream: 'imap.gmail.com:993',
      bytesFromClient: 10,
      bytesToClient: 20,
      durationMs: 30,
      outcome: 'relayed',
      password: 'hunter2',
      accessToken: 'ya29.secret',
    } as SessionRecord;
    logSessionEnd(logger, record);
    expect(lines).toHaveLength(1);
    const { level, time, ...rest } = lines[0] as Record<string, unknown>;
    expect(level).toBe(30);
    expect(typeof time).toBe('number');
    expect(rest).toEqual({
      protocol: 'imap',
      session: 'ab12',
      client: '127.0.0.1:5000',
      account: 'a@example.com',
      upstream: 'imap.gmail.com:993',
      bytesFromClient: 10,
      bytesToClient: 20,
      durationMs: 30,
      outcome: 'relayed',
      msg: 'session end',
    });
  });

  it('logs an unreachable upstream as a warning', () => {
    const { logger, lines } = capture();
    logSessionEnd(logger, {
      protocol: 'smtp',
      session: 'x',
      client: 'c',
      bytesFromClient: 0,
      bytesToClient: 0,
      durationMs: 1,
      outcome: 'upstream-unavailable',
      reason: 'timed out',
    });
    expect(lines[0]).toMatchObject({ level: 40, outcome: 'upstream-unavailable', reason: 'timed out' });
  });

  it('formats IPv6 client addresses with brackets', () => {
    expect(formatAddress('::1', 143)).toBe('[::1]:143');
    expect(formatAddress('127.0.0.1', 143)).toBe('127.0.0.1:143');
  });
});

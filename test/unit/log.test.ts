import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';

function capture(): { stream: Writable; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('createLogger', () => {
  it('redacts secrets by key name, at the top level and one level down', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, pretty: false });
    log.info(
      {
        password: 'hunter2',
        accessToken: 'ya29.secret',
        refresh_token: '1//secret',
        clientSecret: 'GOCSPX-secret',
        auth: { pass: 'hunter3', user: 'alice@example.com' },
        tokens: { refreshToken: 'rt-secret', access_token: 'at-secret' },
      },
      'login',
    );
    const text = JSON.stringify(out.lines());
    for (const secret of [
      'hunter2',
      'hunter3',
      'ya29.secret',
      '1//secret',
      'GOCSPX-secret',
      'rt-secret',
      'at-secret',
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain('alice@example.com');
    expect(out.lines()[0]).toMatchObject({ password: '[redacted]', auth: { pass: '[redacted]' } });
  });

  it('keeps error codes readable (they are what an admin greps for)', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, pretty: false });
    log.warn({ code: 'needs-consent', err: { code: 'ECONNREFUSED' } }, 'login failed');
    expect(out.lines()[0]).toMatchObject({ code: 'needs-consent', err: { code: 'ECONNREFUSED' } });
  });
});

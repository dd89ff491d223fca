/**
 * The POP3 proxy driven by a real client, curl (pop3:// and pop3s://, user:password). curl logs in
 * with AUTH PLAIN because our CAPA offers it (two-step by default, with `--sasl-ir` in one line); the
 * USER/PASS path is driven byte by byte in protocol.test.ts, since curl never picks it over SASL.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { TlsMode } from '../../../src/config/types.js';
import { getTestCerts } from '../../helpers/certs.js';
import {
  EMAIL,
  PASSWORD,
  USER,
  eventually,
  makeMessage,
  sessionLines,
  startPop3Env,
  type Pop3Env,
} from './env.js';

let env: Pop3Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

interface CurlResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs curl against the proxy; never throws (the exit code is part of the result). */
function curl(args: string[]): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      ['-sS', '-v', '--max-time', '60', '--cacert', getTestCerts().caFile, ...args],
      { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, timeout: 90_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr: stderr.toString('utf8') });
      },
    );
  });
}

const credentials = ['-u', `${USER}:${PASSWORD}`];
const url = (e: Pop3Env, path = '', scheme = 'pop3'): string => `${scheme}://127.0.0.1:${e.port}/${path}`;
/** What curl sent (`> `) and received (`< `) on the control connection. */
const dialogue = (r: CurlResult): string[] =>
  r.stderr
    .split('\n')
    .filter((l) => l.startsWith('> ') || l.startsWith('< '))
    .map((l) => l.trimEnd());

const body = Buffer.from(
  'Hello Alice,\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nümlauts and a tab\there\r\ntrailing spaces   \r\n',
  'utf8',
);

describe('POP3 proxy driven by curl', () => {
  it('pop3:// retrieves message 1 byte-exact through AUTH PLAIN (two-step) and XOAUTH2 upstream', async () => {
    const message = makeMessage('first', body);
    env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [message] });
    const r = await curl([...credentials, url(env, '1')]);
    expect(r.code).toBe(0);
    expect(r.stdout.equals(message)).toBe(true);
    const said = dialogue(r);
    expect(said.slice(0, 2)).toEqual(['< +OK xoauth-proxy POP3 ready', '> CAPA']);
    expect(said).toContain('> AUTH PLAIN');
    expect(said).toContain('< +OK Welcome.');
    expect(said).toContain('> RETR 1');
    // The upstream saw the Microsoft-documented two-step form, for the mapped mailbox.
    expect(env.upstream.authAttempts).toEqual([
      { mechanism: 'XOAUTH2', user: EMAIL, ok: true, initialResponse: false },
    ]);
    expect(env.upstream.commands[0]?.slice(0, 3)).toEqual(['AUTH XOAUTH2', '<payload>', 'RETR 1']);
    await eventually(() => sessionLines(env!).length === 1);
    const [line] = sessionLines(env);
    expect(line).toMatchObject({ protocol: 'pop3', account: EMAIL, username: USER, outcome: 'relayed' });
    expect(Number(line?.bytesToClient)).toBeGreaterThan(message.length);
    expect(env.logText()).not.toContain(PASSWORD);
  });

  it('--sasl-ir sends AUTH PLAIN with the initial response; LIST shows the upstream maildrop', async () => {
    const messages = [makeMessage('a', 'one\r\n'), makeMessage('b', 'two\r\n')];
    env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages });
    const r = await curl(['--sasl-ir', ...credentials, url(env)]);
    expect(r.code).toBe(0);
    expect(dialogue(r).some((l) => /^> AUTH PLAIN [A-Za-z0-9+/=]+$/.test(l))).toBe(true);
    expect(r.stdout.toString()).toBe(`1 ${messages[0]!.length}\r\n2 ${messages[1]!.length}\r\n`);
  });

  it('pop3s:// on an implicit-TLS listener, STLS to the upstream', async () => {
    const message = makeMessage('tls', body);
    env = await startPop3Env({ listenerTls: 'implicit', upstreamTls: 'starttls', messages: [message] });
    const r = await curl([...credentials, url(env, '1', 'pop3s')]);
    expect(r.code).toBe(0);
    expect(r.stdout.equals(message)).toBe(true);
    expect(env.upstream.commands[0]?.slice(0, 2)).toEqual(['STLS', 'AUTH XOAUTH2']);
  });

  it('--ssl-reqd on a STLS listener: curl upgrades, asks CAPA again, then logs in', async () => {
    const message = makeMessage('stls', body);
    env = await startPop3Env({ listenerTls: 'starttls', upstreamTls: 'implicit', messages: [message] });
    const r = await curl(['--ssl-reqd', ...credentials, url(env, '1')]);
    expect(r.code).toBe(0);
    expect(r.stdout.equals(message)).toBe(true);
    const said = dialogue(r);
    expect(said.filter((l) => l === '> CAPA')).toHaveLength(2);
    expect(said).toContain('> STLS');
    expect(said.indexOf('> STLS')).toBeLessThan(said.indexOf('> AUTH PLAIN'));
  });

  it('without TLS a STLS listener offers no login at all, so curl cannot send the password in clear', async () => {
    env = await startPop3Env({ listenerTls: 'starttls', upstreamTls: 'implicit', messages: [] });
    const r = await curl([...credentials, url(env)]);
    expect(r.code).not.toBe(0);
    expect(dialogue(r).some((l) => l.startsWith('> AUTH') || l.startsWith('> USER'))).toBe(false);
    expect(env.tokens.calls).toEqual([]);
  });

  it('a large message (12 MB, dot-stuffed lines) comes through the relay byte-exact', async () => {
    const lines: string[] = [];
    let size = 0;
    for (let i = 0; size < 12 * 1024 * 1024; i++) {
      const prefix = i % 97 === 0 ? '.' : '';
      const line = `${prefix}line ${i} ${'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(2 + (i % 3))}\r\n`;
      lines.push(line);
      size += line.length;
    }
    const message = makeMessage('large', lines.join(''));
    env = await startPop3Env({
      listenerTls: 'implicit',
      upstreamTls: 'implicit',
      messages: [makeMessage('small', 'x\r\n'), message],
    });
    const r = await curl([...credentials, url(env, '2', 'pop3s')]);
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(message.length);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(sha(r.stdout)).toBe(sha(message));
  });

  it('DELE through the relay: the upstream applies it at QUIT', async () => {
    env = await startPop3Env({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      messages: [makeMessage('a', 'one\r\n'), makeMessage('b', 'two\r\n')],
    });
    const r = await curl(['-X', 'DELE', '-I', ...credentials, url(env, '2')]);
    expect(r.code).toBe(0);
    await eventually(() => env!.upstream.deleted.length > 0);
    expect(env.upstream.deleted).toEqual([2]);
  });

  it.each<[TlsMode, string, string[]]>([
    ['none', 'pop3', []],
    ['implicit', 'pop3s', []],
    ['starttls', 'pop3', ['--ssl-reqd']],
  ])(
    'wrong password on a %s listener: curl reports a login failure (exit 67)',
    async (tls, scheme, extra) => {
      env = await startPop3Env({ listenerTls: tls, upstreamTls: 'implicit', messages: [] });
      const r = await curl([...extra, '-u', `${USER}:wrong`, url(env, '', scheme)]);
      expect(r.code).toBe(67);
      expect(dialogue(r)).toContain('< -ERR [AUTH] Authentication failed');
      expect(env.tokens.calls).toEqual([]);
      expect(env.upstream.connections).toBe(0);
    },
  );
});

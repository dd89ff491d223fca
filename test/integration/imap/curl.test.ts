/**
 * The IMAP proxy driven by curl (a C client with its own IMAP code): AUTHENTICATE PLAIN (SASL-IR or
 * continuation) and LOGIN with a UTF-8 password full of specials, imaps:// on the implicit-TLS
 * listener, and STARTTLS with --ssl-reqd. (curl 7.88 cannot be made to use the LOGIN *command* while
 * AUTH= mechanisms are advertised — `AUTH=+LOGIN` came later — so imapflow covers that path.)
 */
import { execFile } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { TlsMode } from '../../../src/config/types.js';
import { getTestCerts } from '../../helpers/certs.js';
import { PASSWORD, USER, makeMessage, startImapEnv, type ImapEnv } from './env.js';

let env: ImapEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

interface CurlResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

function curl(args: string[]): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      ['--silent', '--show-error', '--max-time', '60', ...args],
      { encoding: 'buffer', timeout: 90_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : -1
          : 0;
        resolve({ code, stdout, stderr: stderr.toString('utf8') });
      },
    );
  });
}

const message = makeMessage('curl', 'Fetched by curl.\r\nSecond line with ümlauts.\r\n');

describe('IMAP proxy driven by curl', () => {
  it.each([
    ['AUTHENTICATE PLAIN with SASL-IR', 'none', ['--login-options', 'AUTH=PLAIN', '--sasl-ir']],
    ['AUTHENTICATE PLAIN after a continuation', 'none', ['--login-options', 'AUTH=PLAIN']],
    ['AUTHENTICATE LOGIN', 'none', ['--login-options', 'AUTH=LOGIN']],
    ['STARTTLS with --ssl-reqd', 'starttls', ['--ssl-reqd']],
    ['imaps:// on the implicit-TLS listener', 'implicit', []],
  ] as const)('fetches a message byte-exact: %s', async (_name, listenerTls: TlsMode, extra) => {
    env = await startImapEnv({ listenerTls, upstreamTls: 'implicit', messages: [message] });
    const scheme = listenerTls === 'implicit' ? 'imaps' : 'imap';
    const result = await curl([
      ...extra,
      '--cacert',
      getTestCerts().caFile,
      '--user',
      `${USER}:${PASSWORD}`,
      `${scheme}://localhost:${env.port}/INBOX;UID=1`,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.equals(message)).toBe(true);
  });

  it('fails with curl login denied (67) on a wrong password', async () => {
    env = await startImapEnv({ listenerTls: 'none', upstreamTls: 'implicit', messages: [message] });
    const result = await curl(['--user', `${USER}:wrong`, `imap://127.0.0.1:${env.port}/INBOX;UID=1`]);
    expect(result.code).toBe(67);
    expect(env.upstream.connections).toBe(0);
  });
});

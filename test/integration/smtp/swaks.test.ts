/**
 * The SMTP proxy driven by swaks (a Perl SMTP client with its own TLS and SASL code, like many
 * scripts and appliances): AUTH PLAIN and LOGIN, STARTTLS and implicit TLS with certificate checks,
 * pipelining, and a recipient refused upstream.
 */
import { execFile } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { getTestCerts } from '../../helpers/certs.js';
import { EMAIL, PASSWORD, USER, startSmtpEnv, type EnvOptions, type SmtpEnv } from './env.js';

let env: SmtpEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

interface SwaksResult {
  code: number;
  output: string;
}

function swaks(args: string[]): Promise<SwaksResult> {
  return new Promise((resolve) => {
    execFile('swaks', args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

function baseArgs(
  e: SmtpEnv,
  listenerTls: EnvOptions['listenerTls'],
  auth: 'PLAIN' | 'LOGIN',
  to: string,
): string[] {
  const tls =
    listenerTls === 'starttls'
      ? ['--tls', '--tls-verify', '--tls-ca-path', getTestCerts().caFile]
      : listenerTls === 'implicit'
        ? ['--tlsc', '--tls-verify', '--tls-ca-path', getTestCerts().caFile]
        : [];
  return [
    '--server',
    '127.0.0.1',
    '--port',
    String(e.port),
    ...tls,
    '--auth',
    auth,
    '--auth-user',
    USER,
    '--auth-password',
    PASSWORD,
    '--ehlo',
    'swaks.local',
    '--from',
    EMAIL,
    '--to',
    to,
    '--header',
    'Subject: swaks test',
    '--body',
    'Hello from swaks.',
    '--timeout',
    '30',
  ];
}

describe('SMTP proxy with swaks', () => {
  it.each([
    ['starttls', 'implicit', 'PLAIN'],
    ['starttls', 'starttls', 'LOGIN'],
    ['implicit', 'starttls', 'PLAIN'],
    ['implicit', 'implicit', 'LOGIN'],
    ['none', 'starttls', 'LOGIN'],
  ] as const)('client %s, upstream %s, --auth %s: delivered', async (listenerTls, upstreamTls, auth) => {
    env = await startSmtpEnv({ listenerTls, upstreamTls });
    const result = await swaks(baseArgs(env, listenerTls, auth, 'bob@example.net'));
    expect(result.output).toContain('235 2.7.0 Authentication successful');
    expect(result.code).toBe(0);
    expect(env.upstream.messages).toHaveLength(1);
    expect(env.upstream.messages[0]).toMatchObject({ to: ['bob@example.net'], heloName: 'swaks.local' });
    expect(env.upstream.messages[0]!.raw.toString()).toContain('Hello from swaks.');
  });

  it('with --pipeline, one refused recipient is reported as the upstream said, the other gets the mail', async () => {
    env = await startSmtpEnv({ listenerTls: 'starttls', upstreamTls: 'implicit' });
    env.upstream.rejectRecipients.add('nobody@example.net');
    const result = await swaks([
      ...baseArgs(env, 'starttls', 'PLAIN', 'bob@example.net,nobody@example.net'),
      '--pipeline',
    ]);
    expect(result.output).toMatch(
      /<~?\*{1,2} +550 5\.1\.1 The email account that you tried to reach does not exist/,
    );
    expect(result.output).toMatch(/<~? +250 .*gsmtp/);
    expect(env.upstream.messages.map((m) => m.to)).toEqual([['bob@example.net']]);
  });

  it('wrong password: swaks sees 535 5.7.8', async () => {
    env = await startSmtpEnv({ listenerTls: 'implicit', upstreamTls: 'implicit' });
    const args = baseArgs(env, 'implicit', 'LOGIN', 'bob@example.net');
    args[args.indexOf(PASSWORD)] = 'wrong';
    const result = await swaks(args);
    expect(result.output).toContain('535 5.7.8 Authentication credentials invalid');
    expect(result.code).not.toBe(0);
    expect(env.upstream.messages).toHaveLength(0);
  });

  it('a certificate the client does not trust fails the handshake (no silent downgrade)', async () => {
    env = await startSmtpEnv({ listenerTls: 'starttls', upstreamTls: 'implicit' });
    const args = baseArgs(env, 'starttls', 'PLAIN', 'bob@example.net');
    args.splice(args.indexOf('--tls-ca-path'), 2);
    const result = await swaks(args);
    expect(result.code).not.toBe(0);
    expect(result.output).not.toContain('235 ');
  });
});

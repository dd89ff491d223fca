/**
 * The SMTP proxy end to end with nodemailer as the legacy client (AUTH PLAIN and LOGIN), the fake
 * Gmail as upstream and the fake authorization server for tokens.
 */
import { randomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { getTestCerts } from '../../helpers/certs.js';
import {
  EMAIL,
  PASSWORD,
  USER,
  eventually,
  sessionLines,
  startSmtpEnv,
  type EnvOptions,
  type SmtpEnv,
} from './env.js';

let env: SmtpEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

function transport(
  e: SmtpEnv,
  listenerTls: EnvOptions['listenerTls'],
  method: 'PLAIN' | 'LOGIN',
  pass = PASSWORD,
) {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port: e.port,
    secure: listenerTls === 'implicit',
    requireTLS: listenerTls === 'starttls',
    ignoreTLS: listenerTls === 'none',
    tls: { ca: getTestCerts().caPem, servername: 'localhost' },
    auth: { user: USER, pass },
    authMethod: method,
    name: 'scanner.local',
    connectionTimeout: 20_000,
    greetingTimeout: 20_000,
    socketTimeout: 60_000,
  });
}

function message(body: string | Buffer, to = 'bob@example.net'): Buffer {
  const head = `From: ${EMAIL}\r\nTo: ${to}\r\nSubject: test\r\nMessage-ID: <${randomBytes(8).toString('hex')}@scanner.local>\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), Buffer.isBuffer(body) ? body : Buffer.from(body)]);
}

const legs: [EnvOptions['listenerTls'], EnvOptions['upstreamTls']][] = [
  ['starttls', 'starttls'],
  ['starttls', 'implicit'],
  ['implicit', 'starttls'],
  ['implicit', 'implicit'],
  ['none', 'implicit'],
];

describe('SMTP proxy with nodemailer', () => {
  it.each(legs.flatMap(([l, u]) => (['PLAIN', 'LOGIN'] as const).map((m) => [l, u, m] as const)))(
    'client %s, upstream %s, AUTH %s: message arrives as sent',
    async (listenerTls, upstreamTls, method) => {
      env = await startSmtpEnv({ listenerTls, upstreamTls });
      const raw = message(`Hello via ${method}.\r\n.leading dot line\r\n`);
      const info = await transport(env, listenerTls, method).sendMail({
        envelope: { from: EMAIL, to: ['bob@example.net'] },
        raw,
      });
      expect(info.accepted).toEqual(['bob@example.net']);
      // The 250 is the upstream's own, not ours.
      expect(info.response).toMatch(/^250 .*gsmtp$/);
      expect(env.upstream.messages).toHaveLength(1);
      const stored = env.upstream.messages[0]!;
      expect(stored.raw.equals(raw)).toBe(true);
      expect(stored).toMatchObject({
        user: EMAIL,
        from: EMAIL,
        to: ['bob@example.net'],
        heloName: 'scanner.local',
      });
      await eventually(() => sessionLines(env!).length === 1);
      expect(sessionLines(env)[0]).toMatchObject({
        protocol: 'smtp',
        username: USER,
        account: EMAIL,
        upstream: `127.0.0.1:${env.upstream.port}`,
        outcome: 'relayed',
      });
      expect(env.logText()).not.toContain(PASSWORD);
    },
  );

  it('a 10 MB message arrives byte-exact', async () => {
    env = await startSmtpEnv({ listenerTls: 'starttls', upstreamTls: 'implicit' });
    // Random base64 body lines, plus lines that need dot-stuffing and 8-bit bytes.
    const lines: string[] = [];
    let size = 0;
    while (size < 10 * 1024 * 1024) {
      const line = lines.length % 1000 === 0 ? '.dot-stuffed line ü' : randomBytes(57).toString('base64');
      lines.push(line);
      size += line.length + 2;
    }
    const raw = message(`${lines.join('\r\n')}\r\n`);
    const info = await transport(env, 'starttls', 'PLAIN').sendMail({
      envelope: { from: EMAIL, to: ['bob@example.net'] },
      raw,
    });
    expect(info.accepted).toEqual(['bob@example.net']);
    const stored = env.upstream.messages[0]!;
    expect(stored.raw.length).toBe(raw.length);
    expect(stored.raw.equals(raw)).toBe(true);
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]!.bytesFromClient).toBeGreaterThan(raw.length);
  });

  it('one of three recipients refused upstream: exactly that one is reported, the others get the message', async () => {
    env = await startSmtpEnv({ listenerTls: 'implicit', upstreamTls: 'starttls' });
    env.upstream.rejectRecipients.add('nobody@example.net');
    const to = ['bob@example.net', 'nobody@example.net', 'carol@example.net'];
    const info = await transport(env, 'implicit', 'LOGIN').sendMail({
      envelope: { from: EMAIL, to },
      raw: message('hi\r\n'),
    });
    expect(info.accepted).toEqual(['bob@example.net', 'carol@example.net']);
    expect(info.rejected).toEqual(['nobody@example.net']);
    expect(info.rejectedErrors?.[0]?.response).toMatch(
      /^550 5\.1\.1 The email account that you tried to reach does not exist/,
    );
    expect(env.upstream.messages[0]!.to).toEqual(['bob@example.net', 'carol@example.net']);
  });

  it('every recipient refused: the client gets the upstream error and nothing is stored', async () => {
    env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'implicit' });
    env.upstream.rejectRecipients.add('nobody@example.net');
    const err = await transport(env, 'none', 'PLAIN')
      .sendMail({ envelope: { from: EMAIL, to: ['nobody@example.net'] }, raw: message('hi\r\n') })
      .then(
        () => undefined,
        (e: unknown) => e as { responseCode?: number; response?: string },
      );
    expect(err?.responseCode).toBe(550);
    expect(env.upstream.messages).toHaveLength(0);
  });
});

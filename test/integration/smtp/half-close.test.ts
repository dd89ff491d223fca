/**
 * A client that shuts down its sending side right after its last command (`printf ... | nc -N`, a
 * script that closes its input after QUIT) still reads every reply: the message is not lost, and the
 * session then ends by itself.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PASSWORD as LOCAL_PASSWORD, USER as LOCAL_USER, startLocalEnv, type LocalEnv } from './local-env.js';
import { PASSWORD, USER, startSmtpEnv, type SmtpEnv } from './env.js';
import { plainIr } from './raw-client.js';

let envs: Array<LocalEnv | SmtpEnv> = [];
afterEach(async () => {
  for (const e of envs) await e.close();
  envs = [];
});

/** Writes `script` and shuts down the sending side; resolves with everything read until the close. */
async function halfClose(port: number, script: string): Promise<{ text: string; closedMs: number }> {
  const sock: Socket = connect(port, '127.0.0.1');
  let text = '';
  sock.on('data', (c: Buffer) => {
    text += c.toString('latin1');
  });
  sock.on('error', () => undefined);
  await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
  const started = Date.now();
  const closed = new Promise<number>((resolve) => sock.once('close', () => resolve(Date.now() - started)));
  sock.end(script);
  const closedMs = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 10_000))]);
  return { text, closedMs };
}

const message = 'Subject: half close\r\n\r\nhello\r\n.\r\n';

describe('SMTP: the client half-closes after its last command', () => {
  it('Graph mode: the message is sent, 250 and 221 arrive, then the connection closes', async () => {
    const env = await startLocalEnv();
    envs.push(env);
    const script =
      `EHLO nc.test\r\nAUTH PLAIN ${plainIr(LOCAL_USER, LOCAL_PASSWORD)}\r\n` +
      `MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n${message}QUIT\r\n`;
    const { text, closedMs } = await halfClose(env.port, script);
    expect(text).toContain('235 ');
    expect(text).toMatch(/\r\n250 2\.0\.0 OK, message accepted for delivery\r\n221 /);
    expect(closedMs).toBeGreaterThanOrEqual(0);
    expect(env.sender.messages.map((m) => m.data.toString('latin1'))).toEqual([
      'Subject: half close\r\n\r\nhello\r\n',
    ]);
  });

  it('Graph mode: input ending without QUIT still gets its replies and the session ends', async () => {
    const env = await startLocalEnv();
    envs.push(env);
    const script =
      `EHLO nc.test\r\nAUTH PLAIN ${plainIr(LOCAL_USER, LOCAL_PASSWORD)}\r\n` +
      `MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n${message}`;
    const { text, closedMs } = await halfClose(env.port, script);
    expect(text).toMatch(/250 2\.0\.0 OK, message accepted for delivery\r\n$/);
    expect(closedMs).toBeGreaterThanOrEqual(0);
  });

  // Through the relay the upstream decides: this fake (smtp-server) drops its replies once it sees
  // the end, as some servers do; what the proxy owes is that the message reaches it and the session
  // ends, where before a half-close during the login aborted both.
  it('relayed: an end of input during the login still relays the pipelined message, then the session ends', async () => {
    const env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'implicit' });
    envs.push(env);
    const script =
      `EHLO nc.test\r\nAUTH PLAIN ${plainIr(USER, PASSWORD)}\r\n` +
      `MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n${message}QUIT\r\n`;
    const { text, closedMs } = await halfClose(env.port, script);
    expect(text).toContain('235 ');
    expect(closedMs).toBeGreaterThanOrEqual(0);
    expect(env.upstream.messages.map((m) => m.raw.toString('latin1'))).toEqual([
      'Subject: half close\r\n\r\nhello\r\n',
    ]);
  });

  it('before login: an EHLO and the end of input get the EHLO reply, then the close', async () => {
    const env = await startLocalEnv();
    envs.push(env);
    const { text, closedMs } = await halfClose(env.port, 'EHLO nc.test\r\n');
    expect(text).toMatch(/^220 [^\r\n]*\r\n250-/);
    expect(closedMs).toBeGreaterThanOrEqual(0);
  });
});

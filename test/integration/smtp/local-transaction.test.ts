/**
 * The SMTP front's own mail transaction after AUTH (Graph mode), driven by real clients: swaks (with
 * and without PIPELINING, dot-led lines), nodemailer (8-bit body, SMTPUTF8 address), curl (two
 * recipients) and a raw client (BDAT chunks, pipelining, hang-up, idle timeout). The login is the
 * real one (local password, stored token); the sender is a recording stub.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SendOutcome } from '../../../src/graph/types.js';
import {
  EMAIL,
  PASSWORD,
  SENDER_LABEL,
  USER,
  eventually,
  sessionLines,
  startLocalEnv,
  type LocalEnv,
} from './local-env.js';
import { RawSmtpClient, plainIr } from './raw-client.js';

let env: LocalEnv | undefined;
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'xoauth-smtp-local-data-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await env?.close();
  env = undefined;
});

interface Run {
  code: number;
  output: string;
}

function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

/** A message file with CRLF line ends and lines that start with dots (one of them only a dot). */
const DOTTED = Buffer.from(
  [
    `From: ${EMAIL}`,
    'To: bob@example.net',
    'Subject: dots',
    '',
    '.leading dot',
    '..two dots',
    '.',
    'last line',
    '',
  ].join('\r\n'),
);

function swaksArgs(e: LocalEnv, to: string, dataFile: string, extra: string[] = []): string[] {
  return [
    '--server',
    '127.0.0.1',
    '--port',
    String(e.port),
    '--auth',
    'PLAIN',
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
    '--data',
    dataFile,
    '--timeout',
    '30',
    ...extra,
  ];
}

/** swaks sends its data, then CRLF.CRLF: the file holds the message without its last CRLF. */
function swaksFile(name: string): string {
  return dataFile(name, DOTTED.subarray(0, DOTTED.length - 2));
}

function dataFile(name: string, content: Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

describe('SMTP in Graph mode with swaks', () => {
  it.each([
    ['without PIPELINING', []],
    ['with --pipeline', ['--pipeline']],
  ])('%s: the stub gets the exact bytes (dots unstuffed) and the envelope', async (_name, extra) => {
    env = await startLocalEnv();
    const file = swaksFile('dotted.eml');
    const result = await run('swaks', swaksArgs(env, 'bob@example.net,carol@example.org', file, extra));
    expect(result.output).toContain('235 2.7.0 Authentication successful');
    expect(result.output).toContain('250 2.0.0 OK, message accepted for delivery');
    expect(result.code).toBe(0);
    expect(env.sender.messages).toHaveLength(1);
    const [message] = env.sender.messages;
    expect(message?.from).toBe(EMAIL);
    expect(message?.recipients).toEqual(['bob@example.net', 'carol@example.org']);
    expect(message?.data.toString('latin1')).toBe(DOTTED.toString('latin1'));
    // The login went through the real token path: the stored access token reached the login.
    expect(env.sender.tokens).toHaveLength(1);
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]).toMatchObject({
      protocol: 'smtp',
      username: USER,
      upstream: SENDER_LABEL,
      outcome: 'delivered',
      messagesSent: 1,
      messagesRefused: 0,
    });
    const line = sessionLines(env)[0]!;
    expect(line.bytesFromClient as number).toBeGreaterThan(DOTTED.length);
    expect(line.bytesToClient as number).toBeGreaterThan(100);
    expect(env.logText()).not.toContain(PASSWORD);
  });

  const outcomes: [SendOutcome, RegExp][] = [
    [
      { kind: 'temporary', reason: 'Graph answered 503', retryAfterSeconds: 7 },
      /451 4\.4\.5 Graph answered 503; try again in 7 seconds/,
    ],
    [{ kind: 'send-as-denied', reason: 'not allowed to send as this sender' }, /550 5\.7\.60 not allowed/],
    [{ kind: 'too-large', reason: 'too large for the tenant' }, /552 5\.3\.4 too large/],
    [{ kind: 'rejected', reason: 'bad message' }, /554 5\.6\.0 bad message/],
    [
      { kind: 'needs-consent', reason: 'The account has not consented to sending.' },
      /554 5\.7\.0 The account has not consented to sending\. Ask the mailbox owner to run: xoauth-proxy consent alice@example\.com/,
    ],
  ];
  it.each(outcomes)(
    'a sender outcome %j gives swaks the reply %s and a failing exit code',
    async (outcome, reply) => {
      env = await startLocalEnv();
      env.sender.outcome = outcome;
      const result = await run('swaks', swaksArgs(env, 'bob@example.net', swaksFile('o.eml')));
      expect(result.output).toMatch(reply);
      expect(result.code).not.toBe(0);
      expect(env.sender.messages).toHaveLength(1);
      await eventually(() => sessionLines(env!).length === 1);
      expect(sessionLines(env)[0]).toMatchObject({
        outcome: 'delivered',
        messagesSent: 0,
        messagesRefused: 1,
      });
    },
  );

  it('a wrong password: 535, and the sender is never reached', async () => {
    env = await startLocalEnv();
    const args = swaksArgs(env, 'bob@example.net', swaksFile('w.eml'));
    args[args.indexOf(PASSWORD)] = 'wrong';
    const result = await run('swaks', args);
    expect(result.output).toContain('535 5.7.8 Authentication credentials invalid');
    expect(result.code).not.toBe(0);
    expect(env.sender.messages).toHaveLength(0);
    expect(env.sender.tokens).toHaveLength(0);
  });
});

describe('SMTP in Graph mode with nodemailer', () => {
  it('an 8-bit body and an SMTPUTF8 recipient arrive exactly', async () => {
    env = await startLocalEnv();
    const raw = Buffer.from(
      `From: ${EMAIL}\r\nTo: =?utf-8?q?j=C3=BCrgen?= <jürgen@bücher.example>\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln, 東京.\r\n.dot\r\n`,
      'utf8',
    );
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: env.port,
      secure: false,
      ignoreTLS: true,
      auth: { user: USER, pass: PASSWORD },
      name: 'scanner.local',
      connectionTimeout: 20_000,
      greetingTimeout: 20_000,
      socketTimeout: 60_000,
    });
    try {
      const info = await transport.sendMail({
        envelope: { from: EMAIL, to: ['jürgen@bücher.example'] },
        raw,
      });
      expect(info.response).toBe('250 2.0.0 OK, message accepted for delivery');
    } finally {
      transport.close();
    }
    expect(env.sender.messages).toHaveLength(1);
    expect(env.sender.messages[0]?.recipients).toEqual(['jürgen@bücher.example']);
    expect(env.sender.messages[0]?.data.equals(raw)).toBe(true);
  });
});

describe('SMTP in Graph mode, sizes', () => {
  it('a 10 MB message with 8-bit lines and dot-led lines arrives byte-exact (nodemailer)', async () => {
    env = await startLocalEnv();
    const line = Buffer.from('.Grüße \xff\x80 binary-ish 8-bit content, dot first\r\n', 'latin1');
    const body = Buffer.concat(Array.from({ length: Math.ceil(10_000_000 / line.length) }, () => line));
    const raw = Buffer.concat([
      Buffer.from(`From: ${EMAIL}\r\nTo: bob@example.net\r\nSubject: big\r\n\r\n`),
      body,
    ]);
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: env.port,
      secure: false,
      ignoreTLS: true,
      auth: { user: USER, pass: PASSWORD },
      socketTimeout: 60_000,
    });
    try {
      await transport.sendMail({ envelope: { from: EMAIL, to: ['bob@example.net'] }, raw });
    } finally {
      transport.close();
    }
    expect(env.sender.messages).toHaveLength(1);
    expect(env.sender.messages[0]?.data.length).toBe(raw.length);
    expect(env.sender.messages[0]?.data.equals(raw)).toBe(true);
  });

  it('over smtpMaxMessageSize: swaks gets 552 5.3.4 and nothing is sent', async () => {
    env = await startLocalEnv({ settings: { smtpMaxMessageSize: 50 } });
    const result = await run('swaks', swaksArgs(env, 'bob@example.net', swaksFile('big.eml')));
    expect(result.output).toContain('552 5.3.4 Message size exceeds fixed maximum message size');
    expect(result.code).not.toBe(0);
    expect(env.sender.messages).toHaveLength(0);
  });
});

describe('SMTP in Graph mode with curl', () => {
  it('smtp:// with --mail-rcpt twice', async () => {
    env = await startLocalEnv();
    const file = dataFile('curl.eml', DOTTED);
    const result = await run('curl', [
      '--silent',
      '--show-error',
      '--max-time',
      '30',
      `smtp://127.0.0.1:${env.port}/curl.local`,
      '--user',
      `${USER}:${PASSWORD}`,
      '--mail-from',
      EMAIL,
      '--mail-rcpt',
      'bob@example.net',
      '--mail-rcpt',
      'carol@example.org',
      '--upload-file',
      file,
    ]);
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
    expect(env.sender.messages).toHaveLength(1);
    expect(env.sender.messages[0]?.recipients).toEqual(['bob@example.net', 'carol@example.org']);
    expect(env.sender.messages[0]?.data.equals(DOTTED)).toBe(true);
  });
});

async function rawLogin(e: LocalEnv): Promise<RawSmtpClient> {
  const c = await RawSmtpClient.connect(e.port);
  expect(await c.reply()).toMatch(/^220 /);
  expect(await c.command('EHLO raw.local')).toMatch(/^250/);
  expect(await c.command(`AUTH PLAIN ${plainIr(USER, PASSWORD)}`)).toBe(
    '235 2.7.0 Authentication successful',
  );
  return c;
}

describe('SMTP in Graph mode with a raw client', () => {
  it('EHLO after login lists CHUNKING and SMTPUTF8; BDAT in two chunks plus LAST arrives byte-exact', async () => {
    env = await startLocalEnv();
    const c = await rawLogin(env);
    const ehlo = await c.command('EHLO raw.local');
    expect(ehlo.split('\r\n')).toEqual([
      '250-proxy.test',
      '250-PIPELINING',
      '250-8BITMIME',
      '250-SMTPUTF8',
      '250-ENHANCEDSTATUSCODES',
      '250-SIZE 35000000',
      '250 CHUNKING',
    ]);
    expect(await c.command(`MAIL FROM:<${EMAIL}>`)).toBe('250 2.1.0 Sender OK');
    expect(await c.command('RCPT TO:<bob@example.net>')).toBe('250 2.1.5 Recipient OK');
    const one = Buffer.from('Subject: chunks\r\n\r\n.\r\n');
    const two = Buffer.from([0x00, 0x01, 0xfe, 0xff, 0x0d, 0x0a, 0x2e, 0x0d, 0x0a]);
    c.write(Buffer.concat([Buffer.from(`BDAT ${one.length}\r\n`), one]));
    expect(await c.reply()).toBe(`250 2.0.0 ${one.length} octets received`);
    c.write(Buffer.concat([Buffer.from(`BDAT ${two.length}\r\n`), two]));
    expect(await c.reply()).toBe(`250 2.0.0 ${two.length} octets received`);
    expect(await c.command('BDAT 0 LAST')).toBe('250 2.0.0 OK, message accepted for delivery');
    expect(env.sender.messages[0]?.data.equals(Buffer.concat([one, two]))).toBe(true);
    expect(await c.command('QUIT')).toBe('221 2.0.0 Bye');
    c.close();
  });

  it('MAIL, RCPT, RCPT, DATA pipelined in one write get their replies in order', async () => {
    env = await startLocalEnv();
    const c = await rawLogin(env);
    c.write(
      `MAIL FROM:<${EMAIL}>\r\nRCPT TO:<bob@example.net>\r\nRCPT TO:<nobody>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n`,
    );
    expect(await c.reply()).toBe('250 2.1.0 Sender OK');
    expect(await c.reply()).toBe('250 2.1.5 Recipient OK');
    expect(await c.reply()).toBe('501 5.1.3 Bad recipient address syntax');
    expect(await c.reply()).toBe('250 2.1.5 Recipient OK');
    expect(await c.reply()).toBe('354 End data with <CR><LF>.<CR><LF>');
    // The end of the body and the next commands in one write too (RFC 2920).
    c.write('Subject: p\r\n\r\nbody\r\n.\r\nRSET\r\nQUIT\r\n');
    expect(await c.reply()).toBe('250 2.0.0 OK, message accepted for delivery');
    expect(await c.reply()).toBe('250 2.0.0 OK');
    expect(await c.reply()).toBe('221 2.0.0 Bye');
    expect(env.sender.messages[0]).toEqual({
      from: EMAIL,
      recipients: ['bob@example.net', 'carol@example.org'],
      data: Buffer.from('Subject: p\r\n\r\nbody\r\n'),
    });
    c.close();
  });

  /** A logged-in client whose message is now with the (held) sender. */
  async function messageWithSender(): Promise<Awaited<ReturnType<typeof rawLogin>>> {
    env = await startLocalEnv();
    env.sender.hold = true;
    const c = await rawLogin(env);
    c.write(`MAIL FROM:<${EMAIL}>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n`);
    for (let i = 0; i < 3; i++) await c.reply();
    c.write('Subject: h\r\n\r\nx\r\n.\r\n');
    await env.sender.started();
    return c;
  }

  it('a client reset mid-send aborts the send', async () => {
    const c = await messageWithSender();
    expect(env!.sender.signals[0]?.aborted).toBe(false);
    c.reset();
    await eventually(() => env!.sender.signals[0]?.aborted === true);
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env!)[0]).toMatchObject({ outcome: 'delivered', upstream: SENDER_LABEL });
  });

  it('a client that closes (FIN) mid-send: the send finishes, then the session ends', async () => {
    // A FIN may be a half-close (a script that still reads): the message Graph is taking is not
    // thrown away on it; the reply to a client that is gone only fails to arrive.
    const c = await messageWithSender();
    c.close();
    await new Promise((r) => setTimeout(r, 200));
    expect(env!.sender.signals[0]?.aborted).toBe(false);
    env!.sender.release();
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env!)[0]).toMatchObject({ outcome: 'delivered', messagesSent: 1 });
  });

  it('idle after login: 421 4.4.2 after postLoginIdleTimeout, outcome timeout', async () => {
    env = await startLocalEnv({ settings: { postLoginIdleTimeoutMs: 300, preAuthIdleTimeoutMs: 60_000 } });
    const c = await rawLogin(env);
    const started = Date.now();
    expect(await c.reply(5_000)).toBe('421 4.4.2 Idle timeout, closing connection');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    await c.waitClosed();
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]).toMatchObject({ outcome: 'timeout', messagesSent: 0 });
  });

  it('shutdown during a send: the send finishes, its 250 comes first, then 421 4.3.2', async () => {
    const c = await messageWithSender();
    const closing = env!.proxy.close();
    setTimeout(() => env?.sender.release(), 200);
    expect(await c.reply()).toBe('250 2.0.0 OK, message accepted for delivery');
    expect(await c.reply()).toBe('421 4.3.2 Service shutting down');
    await c.waitClosed();
    await closing;
    expect(env!.sender.signals[0]?.aborted).toBe(false);
  });

  it('shutdown during a send that does not finish: aborted after the grace, 451 then 421', async () => {
    const c = await messageWithSender();
    const started = Date.now();
    const closing = env!.proxy.close();
    expect(await c.reply(10_000)).toBe('451 4.4.0 aborted');
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_500);
    expect(await c.reply()).toBe('421 4.3.2 Service shutting down');
    expect(env!.sender.signals[0]?.aborted).toBe(true);
    await closing;
  });
});

/**
 * Small pieces shared by the end-to-end files: a raw line-oriented client for transcripts a library
 * would hide (XOAUTH2 error continuations), test messages, and printing server logs when a test fails.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { beforeEach, expect } from 'vitest';
import { startDovecot, type DovecotServer } from '../helpers/dovecot.js';
import {
  startFakeAuthServer,
  type FakeAuthOptions,
  type FakeAuthServer,
} from '../helpers/fake-auth-server.js';
import {
  startProxyProcess,
  type ProxyProcess,
  type ProxyUpstream,
  type StartProxyOptions,
} from '../helpers/proxy-process.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';
import { RawPop3Client } from '../integration/pop3/raw-client.js';

/** Registers a beforeEach that prints these logs when the test fails (Dovecot, the proxy, ...). */
export function printLogsOnFailure(
  sources: () => Array<{ name: string; text: () => string } | undefined>,
): void {
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      for (const source of sources()) {
        if (!source) continue;
        const text = source.text();
        // The tail is what matters; a 20 MB test can make logs long.
        console.error(
          `\n----- ${source.name} log (last 200 lines) -----\n${text.split('\n').slice(-200).join('\n')}`,
        );
      }
    });
  });
}

/** A raw socket reading CRLF lines, for assertions on the exact protocol exchange. */
export class LineClient {
  private buffer = '';
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private closed = false;

  private constructor(public socket: Socket | TLSSocket) {
    this.attach();
  }

  static async open(o: {
    host: string;
    port: number;
    tls?: { ca: string; servername?: string };
  }): Promise<LineClient> {
    const socket = o.tls
      ? tlsConnect({ host: o.host, port: o.port, ca: o.tls.ca, servername: o.tls.servername ?? 'localhost' })
      : netConnect({ host: o.host, port: o.port });
    await new Promise<void>((resolve, reject) => {
      socket.once(o.tls ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    return new LineClient(socket);
  }

  private attach(): void {
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let eol: number;
      while ((eol = this.buffer.indexOf('\r\n')) >= 0) {
        this.lines.push(this.buffer.slice(0, eol));
        this.buffer = this.buffer.slice(eol + 2);
      }
      this.waiter?.();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    this.socket.on('error', () => undefined);
  }

  /** Upgrades this connection in place (after the server's STARTTLS go-ahead). */
  async startTls(ca: string, servername = 'localhost'): Promise<void> {
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('close');
    const secure = tlsConnect({ socket: this.socket as Socket, ca, servername });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.attach();
  }

  send(line: string): void {
    this.socket.write(`${line}\r\n`);
  }

  /** The next line matching `pattern` (lines before it are returned too, for transcripts). */
  async readUntil(pattern: RegExp, timeoutMs = 15_000): Promise<string[]> {
    const seen: string[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.lines.length > 0) {
        const line = this.lines.shift()!;
        seen.push(line);
        if (pattern.test(line)) return seen;
      }
      if (this.closed) throw new Error(`connection closed before ${pattern}; got:\n${seen.join('\n')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}; got:\n${seen.join('\n')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve();
        };
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export function xoauth2(user: string, token: string): string {
  return Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`).toString('base64');
}

/** An RFC 5322 message with CRLF line ends (what IMAP returns byte-exact from a maildir file). */
export function testMessage(o: { from?: string; to: string; subject: string; body?: string }): string {
  return [
    `From: ${o.from ?? 'sender@example.net'}`,
    `To: ${o.to}`,
    `Subject: ${o.subject}`,
    `Message-ID: <${o.subject.replace(/[^A-Za-z0-9]/g, '')}.${Date.now()}@e2e.test>`,
    'Date: Sat, 28 Nov 2026 12:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    o.body ?? `Body of ${o.subject}.\r\nSecond line with UTF-8: grüße.`,
    '',
  ].join('\r\n');
}

// ---------------------------------------------------------------------------------------------------
// The whole stand-in world: fake authorization server, SMTP sink, Dovecot, and the proxy binary.

export interface WorldAccount {
  /** Login name = upstream mailbox here. */
  email: string;
  password: string;
  /** Connection: `e2e` (IMAP implicit TLS + submission STARTTLS upstream, the default),
   *  `e2e-alt` (IMAP STARTTLS + submissions implicit TLS upstream) or
   *  `e2e-bearer` (IMAP implicit TLS with OAUTHBEARER instead of XOAUTH2; no SMTP).
   *  With `startWorld({ pop3: true })`: POP3S upstream for `e2e` and `e2e-bearer`, STLS for `e2e-alt`. */
  connection?: 'e2e' | 'e2e-alt' | 'e2e-bearer';
  /** Seed an access token the server will refuse although it looks valid for an hour (the proxy
   *  cannot know; only the upstream's refusal tells it). */
  refusedAccessToken?: boolean;
  /** Seed a grant in the proxy's store (default true); `accessTokenTtlSeconds` for its access token. */
  grant?: boolean;
  accessTokenTtlSeconds?: number;
}

export interface World {
  auth: FakeAuthServer;
  sink: SmtpSink;
  dovecot: DovecotServer;
  proxy: ProxyProcess;
  /** The grants seeded per email. */
  grants: Map<string, { refreshToken: string; accessToken: string; expiresAt: number }>;
  stop(): Promise<void>;
}

export async function startWorld(o: {
  accounts: WorldAccount[];
  authOptions?: FakeAuthOptions;
  settings?: Record<string, unknown>;
  listen?: StartProxyOptions['listen'];
  /** Extra environment for the proxy (e.g. LOG_LEVEL). */
  env?: Record<string, string>;
  /**
   * Give every connection a POP3 upstream too (`e2e` and `e2e-bearer`: POP3S, `e2e-alt`: STLS); Dovecot
   * must then serve POP3. Default off: the proxy's config is the IMAP/SMTP one.
   */
  pop3?: boolean;
}): Promise<World> {
  const started: Array<{ stop: () => Promise<void> }> = [];
  const stopAll = async (): Promise<void> => {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
  };
  try {
    const auth = await startFakeAuthServer(o.authOptions);
    started.push({ stop: () => auth.close() });
    const sink = await startSmtpSink();
    started.push({ stop: () => sink.close() });
    const dovecot = await startDovecot({
      tokeninfoUrl: auth.tokeninfoUrl,
      users: o.accounts.map((a) => a.email),
      submissionRelay: { host: sink.host, port: sink.port },
      ...(o.pop3 ? { pop3: true } : {}),
    });
    started.push(dovecot);
    const pop3 = (tls: 'implicit' | 'starttls'): Pick<ProxyUpstream, 'pop3'> =>
      o.pop3 ? { pop3: { port: tls === 'implicit' ? dovecot.ports.pop3s! : dovecot.ports.pop3!, tls } } : {};
    const grants = new Map<string, { refreshToken: string; accessToken: string; expiresAt: number }>();
    for (const a of o.accounts) {
      if (a.grant === false) continue;
      const opts =
        a.accessTokenTtlSeconds === undefined
          ? undefined
          : { accessTokenTtlSeconds: a.accessTokenTtlSeconds };
      grants.set(a.email, auth.issueGrant(a.email, opts));
    }
    const proxy = await startProxyProcess({
      auth,
      upstream: {
        host: dovecot.host,
        ca: dovecot.caPem,
        imap: { port: dovecot.ports.imaps, tls: 'implicit' },
        smtp: { port: dovecot.ports.submission, tls: 'starttls' },
        ...pop3('implicit'),
      },
      moreConnections: {
        'e2e-alt': {
          host: dovecot.host,
          ca: dovecot.caPem,
          imap: { port: dovecot.ports.imap, tls: 'starttls' },
          smtp: { port: dovecot.ports.submissions, tls: 'implicit' },
          ...pop3('starttls'),
        },
        'e2e-bearer': {
          host: dovecot.host,
          ca: dovecot.caPem,
          sasl: 'oauthbearer',
          imap: { port: dovecot.ports.imaps, tls: 'implicit' },
          ...pop3('implicit'),
        },
      },
      accounts: o.accounts.map((a) => ({
        username: a.email,
        password: a.password,
        connection: a.connection ?? 'e2e',
      })),
      grants: [...grants].map(([email, g]) => {
        const account = o.accounts.find((a) => a.email === email);
        return {
          email,
          connection: account?.connection ?? 'e2e',
          refreshToken: g.refreshToken,
          ...(account?.refusedAccessToken
            ? { accessToken: `refused-${randomBytes(8).toString('hex')}`, expiresAt: Date.now() + 3_600_000 }
            : { accessToken: g.accessToken, expiresAt: g.expiresAt }),
        };
      }),
      ...(o.listen ? { listen: o.listen } : {}),
      ...(o.settings ? { settings: o.settings } : {}),
      ...(o.env ? { env: o.env } : {}),
    });
    started.push(proxy);
    return { auth, sink, dovecot, proxy, grants, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** printLogsOnFailure sources for a world (it may not exist yet when beforeAll failed). */
export function worldLogs(
  world: () => World | undefined,
): () => Array<{ name: string; text: () => string } | undefined> {
  return () => {
    const w = world();
    if (!w) return [];
    return [
      { name: 'dovecot', text: () => w.dovecot.log() },
      { name: 'xoauth-proxy', text: () => w.proxy.output() },
    ];
  };
}

export interface RunResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a command-line client (curl, swaks) without a shell; never rejects. */
export function run(
  cmd: string,
  args: string[],
  o: { input?: Buffer | string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { encoding: 'buffer', timeout: o.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code ?? null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr: stderr.toString('utf8') });
      },
    );
    if (o.input !== undefined) child.stdin?.end(o.input);
    else child.stdin?.end();
  });
}

/** A message of about `bytes` bytes: headers plus base64 lines of 76 characters, CRLF throughout. */
export function bigMessage(to: string, subject: string, bytes: number): Buffer {
  const head = testMessage({ to, subject, body: '' }).replace(/\r\n\r\n$/, '\r\n');
  const lineCount = Math.ceil(bytes / 78);
  const random = randomBytes(lineCount * 57);
  const lines: string[] = [];
  for (let i = 0; i < lineCount; i++) lines.push(random.subarray(i * 57, (i + 1) * 57).toString('base64'));
  return Buffer.from(`${head}X-Padding: base64 noise\r\n\r\n${lines.join('\r\n')}\r\n`, 'latin1');
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function imapQuote(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * Logs in with a raw IMAP LOGIN on the proxy's plain listener and, on success, proves the upstream
 * session works with a SELECT. Returns the tagged LOGIN reply (the exact text a legacy client sees).
 */
export async function imapLogin(port: number, user: string, password: string): Promise<string> {
  const c = await LineClient.open({ host: '127.0.0.1', port });
  try {
    await c.readUntil(/^\* OK/);
    c.send(`a1 LOGIN ${imapQuote(user)} ${imapQuote(password)}`);
    const reply = (await c.readUntil(/^a1 /, 30_000)).at(-1)!;
    if (/^a1 OK/.test(reply)) {
      c.send('a2 SELECT INBOX');
      const selected = (await c.readUntil(/^a2 /)).at(-1)!;
      if (!/^a2 OK/.test(selected)) throw new Error(`LOGIN ok but SELECT failed: ${selected}`);
      c.send('a3 LOGOUT');
      await c.readUntil(/^a3 /).catch(() => undefined);
    }
    return reply;
  } finally {
    c.close();
  }
}

/**
 * SMTP AUTH PLAIN on the proxy's plain listener; resolves with the AUTH reply line (235 ... on success,
 * after which a NOOP must reach the upstream and succeed).
 */
export async function smtpAuth(port: number, user: string, password: string): Promise<string> {
  const c = await LineClient.open({ host: '127.0.0.1', port });
  try {
    await c.readUntil(/^220 /);
    c.send('EHLO e2e.test');
    await c.readUntil(/^250 /);
    c.send(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`, 'utf8').toString('base64')}`);
    const reply = (await c.readUntil(/^\d{3} /, 30_000)).at(-1)!;
    if (reply.startsWith('235')) {
      c.send('NOOP');
      const noop = (await c.readUntil(/^\d{3} /)).at(-1)!;
      if (!noop.startsWith('250')) throw new Error(`AUTH ok but NOOP failed: ${noop}`);
      c.send('QUIT');
    }
    return reply;
  } finally {
    c.close();
  }
}

/**
 * POP3 USER/PASS on the proxy's plain listener; resolves with the PASS reply (the exact text a legacy
 * client sees). On `+OK` a STAT must reach the upstream and succeed before QUIT.
 */
export async function pop3Login(port: number, user: string, password: string): Promise<string> {
  const c = await RawPop3Client.connect(port);
  try {
    const greeting = await c.line();
    if (!greeting.startsWith('+OK')) throw new Error(`no POP3 greeting: ${greeting}`);
    const userReply = await c.command(`USER ${user}`);
    if (!userReply.startsWith('+OK')) throw new Error(`USER refused: ${userReply}`);
    const reply = await c.command(`PASS ${password}`);
    if (reply.startsWith('+OK')) {
      const stat = await c.command('STAT');
      if (!/^\+OK \d+ \d+$/.test(stat)) throw new Error(`PASS ok but STAT failed: ${stat}`);
      await c.command('QUIT');
    }
    return reply;
  } finally {
    c.close();
  }
}

/** Waits until the epoch-ms time `at` has passed (token expiry is the event here; there is no other). */
export async function waitUntil(at: number): Promise<void> {
  const left = at - Date.now();
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
}

/**
 * Every secret the proxy of this world has handled: the given passwords, the seeded grants, and the
 * tokens in its store now (refreshed and rotated ones included). For "no secret in the log" checks.
 */
export async function worldSecrets(world: World, passwords: string[]): Promise<Set<string>> {
  const secrets = new Set<string>(passwords);
  for (const grant of world.grants.values()) {
    secrets.add(grant.refreshToken);
    secrets.add(grant.accessToken);
  }
  const store = await world.proxy.openStore();
  try {
    for (const record of await store.listTokens()) {
      if (record.refreshToken) secrets.add(record.refreshToken);
      if (record.accessToken) secrets.add(record.accessToken);
    }
  } finally {
    await store.close();
  }
  return secrets;
}

/** Waits (up to 30 s) until the proxy printed `text` at least `count` times. */
export async function waitForOutput(p: { output(): string }, text: string, count = 1): Promise<void> {
  const seen = (): number => p.output().split(text).length - 1;
  for (let i = 0; i < 300 && seen() < count; i++) await new Promise((r) => setTimeout(r, 100));
  expect(seen()).toBeGreaterThanOrEqual(count);
}

/** True when a new TCP connection to the port is refused (nobody listens any more). */
export function portRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

/**
 * The upstream SMTP leg before the relay: greeting, EHLO with the client's name, STARTTLS when the
 * server is on port 587, and AUTH XOAUTH2 (or OAUTHBEARER) in two steps.
 *
 * Why two steps (RFC 4954 §4 allows an initial response on the AUTH line): Microsoft access tokens are
 * often 2-3 KB, and some servers and middleboxes cut command lines at 512 or 1000 bytes, so the token
 * goes on a line of its own after the server's `334`.
 *
 * On a refused token Gmail does not answer `535` at once but sends an error challenge,
 * `334 <base64 JSON>`; the client must answer with an empty line (OAUTHBEARER: `AQ==`) to get the
 * final `535`. The proxy does that itself: the legacy client never sees a challenge it did not ask for.
 * The shared login orchestration then forces one token refresh and calls `authenticate` again on the
 * same connection (an SMTP server accepts a new AUTH after a failed one), or on a new one if the
 * server hung up.
 */
import type { ConnectionConfig, ResolvedAccount, UpstreamServer } from '../../config/types.js';
import { ProxyError } from '../../errors.js';
import type { UpstreamAuthOutcome, UpstreamLogin } from '../shared/login.js';
import {
  errorChallengeResponse,
  mechanismName,
  oauthBearerPayload,
  xoauth2Payload,
  type OAuthMechanism,
} from '../shared/sasl.js';
import {
  connectUpstream,
  timedOutAfter,
  type UpstreamConnection,
  type UpstreamDialect,
} from '../shared/upstream.js';
import type { UpstreamPool } from '../shared/upstream-pool.js';

/** A complete SMTP reply: one code, one or more text lines (RFC 5321 §4.2.1). */
export interface SmtpReply {
  code: number;
  lines: string[];
}

/** Longest multi-line reply we read (Gmail's EHLO has ~10 lines). */
const MAX_REPLY_LINES = 100;
const REPLY_LINE = /^(\d{3})([ -])(.*)$|^(\d{3})$/;

/** The reply as text, one line per reply line, each with its code: for messages and pass-through. */
export function formatReply(reply: SmtpReply): string {
  return reply.lines
    .map((text, i) => `${reply.code}${i === reply.lines.length - 1 ? ' ' : '-'}${text}`)
    .join('\n');
}

function protocolError(conn: UpstreamConnection, what: string): ProxyError {
  const error = new ProxyError('upstream-unavailable', `upstream ${conn.label}: ${what}`, { detail: what });
  conn.fail(error);
  return error;
}

export async function readReply(conn: UpstreamConnection): Promise<SmtpReply> {
  const lines: string[] = [];
  let code: number | undefined;
  for (let i = 0; i < MAX_REPLY_LINES; i++) {
    const line = await conn.readLine();
    const m = REPLY_LINE.exec(line);
    if (!m) throw protocolError(conn, 'malformed SMTP reply');
    const lineCode = Number(m[1] ?? m[4]);
    if (code !== undefined && lineCode !== code)
      throw protocolError(conn, 'inconsistent multi-line SMTP reply');
    code = lineCode;
    lines.push(m[3] ?? '');
    if (m[2] !== '-') return { code, lines };
  }
  throw protocolError(conn, 'SMTP reply too long');
}

async function expect(
  conn: UpstreamConnection,
  ok: (code: number) => boolean,
  what: string,
): Promise<SmtpReply> {
  const reply = await readReply(conn);
  if (!ok(reply.code)) {
    const error = new ProxyError(
      'upstream-unavailable',
      `upstream ${conn.label}: ${what}: ${formatReply(reply)}`,
      {
        detail: formatReply(reply),
      },
    );
    conn.fail(error);
    throw error;
  }
  return reply;
}

async function ehlo(conn: UpstreamConnection, heloName: string): Promise<SmtpReply> {
  conn.write(`EHLO ${heloName}\r\n`);
  return expect(conn, (c) => c === 250, 'EHLO refused');
}

/** A greeted, TLS-protected upstream that has seen our EHLO, ready for AUTH. */
export interface SmtpUpstream {
  conn: UpstreamConnection;
  server: UpstreamServer;
  /** The EHLO reply's keyword lines after TLS (for logs and tests). */
  extensions: string[];
}

export interface SmtpUpstreamOptions {
  /** The client's EHLO/HELO name, passed on so the upstream's Received: header names the real sender. */
  heloName: string;
  /** Deadline for connect+greeting+STARTTLS, and again for the EHLO and each AUTH attempt. */
  timeoutMs: number;
  /** Warm connections: keyed by the EHLO name too, so the upstream sees the same dialogue. */
  pool?: UpstreamPool;
}

function dialect(heloName: string): UpstreamDialect<SmtpReply> {
  return {
    readGreeting: (conn) => expect(conn, (c) => c === 220, 'unexpected greeting'),
    async requestStartTls(conn) {
      await ehlo(conn, heloName);
      conn.write('STARTTLS\r\n');
      await expect(conn, (c) => c === 220, 'STARTTLS refused');
    },
  };
}

/** Enhanced status codes (RFC 3463) that mean "this token is no good", worth one forced refresh. */
function isTokenRejection(reply: SmtpReply): boolean {
  if (reply.code !== 535 && reply.code !== 530 && reply.code !== 534) return false;
  const enhanced = /^(\d\.\d{1,3}\.\d{1,3})\b/.exec(reply.lines[0] ?? '')?.[1];
  // Gmail: 5.7.8; Exchange Online: 5.7.3; none at all from servers without ENHANCEDSTATUSCODES.
  return enhanced === undefined || enhanced === '5.7.8' || enhanced === '5.7.3' || enhanced === '5.7.0';
}

export function smtpUpstreamLogin(options: SmtpUpstreamOptions): UpstreamLogin<SmtpUpstream> {
  return {
    async connect(account: ResolvedAccount, signal: AbortSignal): Promise<SmtpUpstream> {
      const server = account.connection.smtp;
      if (!server) {
        throw new ProxyError('config', `connection ${account.connection.name} has no SMTP server configured`);
      }
      const ca = account.connection.ca;
      // Everything before AUTH (what a warm connection has done).
      const prepare = async (s: AbortSignal): Promise<SmtpUpstream> => {
        const { conn } = await connectUpstream(
          { server, ca, timeoutMs: options.timeoutMs, signal: s },
          dialect(options.heloName),
        );
        // RFC 3207 §4.2: after TLS the client must EHLO again; with implicit TLS this is the first one.
        const reply = await conn.withDeadline(
          options.timeoutMs,
          timedOutAfter('EHLO', options.timeoutMs),
          () => ehlo(conn, options.heloName),
        );
        return { conn, server, extensions: reply.lines.slice(1) };
      };
      const pool = options.pool;
      return pool
        ? pool.acquire({ protocol: 'smtp', server, ca, heloName: options.heloName }, prepare, signal)
        : prepare(signal);
    },

    async authenticate(
      upstream: SmtpUpstream,
      account: ResolvedAccount,
      accessToken: string,
    ): Promise<UpstreamAuthOutcome> {
      const { conn, server } = upstream;
      const mechanism: OAuthMechanism = account.connection.sasl;
      const payload =
        mechanism === 'xoauth2'
          ? xoauth2Payload(account.email, accessToken)
          : oauthBearerPayload(account.email, accessToken, server.host, server.port);
      return conn.withDeadline(options.timeoutMs, timedOutAfter('AUTH', options.timeoutMs), async () => {
        conn.write(`AUTH ${mechanismName(mechanism)}\r\n`);
        const go = await readReply(conn);
        if (go.code !== 334) return refused(conn, go);
        conn.write(`${payload}\r\n`);
        let result = await readReply(conn);
        if (result.code === 334) {
          // The error challenge (JSON with status/scope): answer it so the server sends its final reply.
          conn.write(`${errorChallengeResponse(mechanism)}\r\n`);
          result = await readReply(conn);
          if (result.code === 334) throw protocolError(conn, 'second SASL challenge');
        }
        if (result.code === 235) return { ok: true };
        return refused(conn, result);
      });
    },

    close(upstream: SmtpUpstream): void {
      upstream.conn.close();
    },
  };
}

/**
 * A refusal: 4xx is temporary (454 4.7.0 to the client); a token rejection gets one forced refresh
 * and retry; anything else (Exchange's `535 5.7.139 ... SmtpClientAuthentication is disabled`) will not
 * get better with a new token, so it ends the login with the upstream's own reply.
 */
function refused(conn: UpstreamConnection, reply: SmtpReply): UpstreamAuthOutcome {
  const text = formatReply(reply);
  if (reply.code >= 400 && reply.code < 500) {
    const error = new ProxyError('upstream-unavailable', `upstream ${conn.label}: AUTH: ${text}`, {
      detail: text,
    });
    conn.fail(error);
    throw error;
  }
  if (!isTokenRejection(reply)) {
    conn.close();
    throw new ProxyError('upstream-rejected', `upstream ${conn.label} refused the login: ${text}`, {
      detail: text,
    });
  }
  return { ok: false, reason: text, reusable: !conn.socket.destroyed };
}

/**
 * Asks an upstream for its extensions without logging in: greeting, STARTTLS where configured, EHLO,
 * QUIT. The keywords (first reply line, the server's name, left out) are what a login would have seen.
 */
export async function probeSmtpExtensions(
  connection: ConnectionConfig,
  server: UpstreamServer,
  options: { heloName: string; timeoutMs: number; signal: AbortSignal },
): Promise<string[]> {
  const { conn } = await connectUpstream(
    {
      server,
      ...(connection.ca ? { ca: connection.ca } : {}),
      timeoutMs: options.timeoutMs,
      signal: options.signal,
    },
    dialect(options.heloName),
  );
  try {
    const reply = await conn.withDeadline(options.timeoutMs, timedOutAfter('EHLO', options.timeoutMs), () =>
      ehlo(conn, options.heloName),
    );
    // A polite goodbye; its answer does not matter, and a server that hangs up first is fine too.
    await conn
      .withDeadline(options.timeoutMs, timedOutAfter('QUIT', options.timeoutMs), () => {
        conn.write('QUIT\r\n');
        return readReply(conn);
      })
      .catch(() => undefined);
    return reply.lines.slice(1);
  } finally {
    conn.close();
  }
}

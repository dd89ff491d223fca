/**
 * The upstream POP3 login with an OAuth token: greeting, STLS when configured (port 110), then
 * `AUTH XOAUTH2` (or OAUTHBEARER) in two steps: `AUTH XOAUTH2` -> `+ ` -> base64 token.
 *
 * Why always two steps: RFC 5034 §4 allows an initial response only if the AUTH line stays within
 * RFC 2449's 255 octets, and no real XOAUTH2 payload is that short (a Google token alone is ~200
 * characters before base64, Microsoft's are 2-3 KB). The two-step form is also the one Microsoft
 * documents for Exchange Online POP, and it needs no CAPA round trip.
 *
 * Gmail's error challenge: on a bad token the server answers `+ <base64 JSON>` instead of `-ERR`; the
 * client must send an empty line (OAUTHBEARER: `AQ==`) to get the final `-ERR`. The proxy does that
 * itself; the shared orchestration then forces one refresh and calls `authenticate` again on the same
 * connection (RFC 1939 §4: a failed login leaves the session in the AUTHORIZATION state).
 */
import type { ConnectionConfig, ResolvedAccount, UpstreamServer } from '../../config/types.js';
import { ProxyError } from '../../errors.js';
import type { UpstreamAuthOutcome, UpstreamLogin } from '../shared/login.js';
import { errorChallengeResponse, mechanismName, oauthBearerPayload, xoauth2Payload } from '../shared/sasl.js';
import type { UpstreamPool } from '../shared/upstream-pool.js';
import {
  accountServer,
  connectUpstream,
  timedOutAfter,
  type UpstreamConnection,
  type UpstreamDialect,
} from '../shared/upstream.js';

/** A greeted, TLS-protected upstream POP3 connection in the AUTHORIZATION state. */
export interface Pop3Upstream {
  conn: UpstreamConnection;
  server: UpstreamServer;
  /** The greeting line (for tests and logs). */
  greeting: string;
  /** After a successful login: the text of the upstream's `+OK` (passed on to the client). */
  loginText?: string;
}

/**
 * RFC 2449 §8 response codes that a new token will not cure: the mailbox is locked by another
 * session, logins are too frequent, or the server has a temporary problem. The client gets a
 * temporary error and comes back later.
 */
const TRANSIENT_CODES = /^-ERR \[(?:SYS\/TEMP|IN-USE|LOGIN-DELAY)(?:\/[^\]]*)?\]/i;
/** `[SYS/PERM]`: the server will not let this mailbox in (POP disabled, account blocked). */
const PERMANENT_CODE = /^-ERR \[SYS\/PERM\]/i;

function upstreamError(conn: UpstreamConnection, reason: string): ProxyError {
  const error = new ProxyError('upstream-unavailable', `upstream ${conn.label}: ${reason}`, {
    detail: reason,
  });
  conn.fail(error);
  return error;
}

const isOk = (line: string): boolean => line === '+OK' || line.startsWith('+OK ');
const isErr = (line: string): boolean => line === '-ERR' || line.startsWith('-ERR ');
const isContinuation = (line: string): boolean => line === '+' || line.startsWith('+ ');

function dialect(): UpstreamDialect<string> {
  return {
    async readGreeting(conn) {
      const line = await conn.readLine();
      if (!isOk(line)) throw upstreamError(conn, `unexpected greeting: ${line.slice(0, 100)}`);
      return line;
    },
    async requestStartTls(conn) {
      conn.write('STLS\r\n');
      const line = await conn.readLine();
      if (!isOk(line)) throw upstreamError(conn, `STLS refused: ${line.slice(0, 100)}`);
    },
  };
}

/** What a `-ERR` after our token means: retry with a fresh token, wait, or give up. */
function refused(conn: UpstreamConnection, line: string): UpstreamAuthOutcome {
  // The client's own reply already starts with -ERR: pass on only the server's words.
  const text = line.replace(/^-ERR ?/, '').slice(0, 300);
  if (TRANSIENT_CODES.test(line)) throw upstreamError(conn, text);
  if (PERMANENT_CODE.test(line)) {
    conn.close();
    throw new ProxyError('upstream-rejected', `upstream ${conn.label} refused the login: ${text}`, {
      detail: text,
    });
  }
  // `[AUTH]` (Gmail) or no code at all (Exchange: "-ERR Authentication failure: unknown user name
  // or bad password."): the token is the likely culprit.
  return { ok: false, reason: text, reusable: !conn.socket.destroyed };
}

async function authenticateOnce(
  up: Pop3Upstream,
  account: ResolvedAccount,
  token: string,
): Promise<UpstreamAuthOutcome> {
  const { conn, server } = up;
  const mechanism = account.connection.sasl;
  const payload =
    mechanism === 'xoauth2'
      ? xoauth2Payload(account.email, token)
      : oauthBearerPayload(account.email, token, server.host, server.port);
  conn.write(`AUTH ${mechanismName(mechanism)}\r\n`);
  const go = await conn.readLine();
  if (isErr(go)) {
    // The mechanism itself was refused: a new token will not change that.
    conn.close();
    const text = go.slice(0, 300);
    throw new ProxyError('upstream-rejected', `upstream ${conn.label} refused AUTH: ${text}`, {
      detail: text,
    });
  }
  if (!isContinuation(go)) throw upstreamError(conn, `unexpected reply to AUTH: ${go.slice(0, 100)}`);
  conn.write(`${payload}\r\n`);
  let result = await conn.readLine();
  if (isContinuation(result)) {
    // The error challenge (base64 JSON with status/scope): answer it so the server sends its -ERR.
    conn.write(`${errorChallengeResponse(mechanism)}\r\n`);
    result = await conn.readLine();
    if (isContinuation(result)) throw upstreamError(conn, 'second SASL challenge');
  }
  if (isOk(result)) {
    up.loginText = result.slice(4);
    return { ok: true };
  }
  if (isErr(result)) return refused(conn, result);
  throw upstreamError(conn, `unexpected reply to the token: ${result.slice(0, 100)}`);
}

/** The POP3 half of `performLogin`. `timeoutMs` bounds the connect phase and, again, each login try. */
export function pop3UpstreamLogin(timeoutMs: number, pool?: UpstreamPool): UpstreamLogin<Pop3Upstream> {
  return {
    async connect(account, signal) {
      const server = accountServer(account, 'pop3');
      const ca = account.connection.ca;
      // Everything before AUTH: connect, greeting, STLS (what a warm connection has done).
      const prepare = async (s: AbortSignal): Promise<Pop3Upstream> => {
        const { conn, greeting } = await connectUpstream(
          { server, ...(ca ? { ca } : {}), timeoutMs, signal: s },
          dialect(),
        );
        return { conn, server, greeting };
      };
      return pool ? pool.acquire({ protocol: 'pop3', server, ca }, prepare, signal) : prepare(signal);
    },
    authenticate(up, account, token) {
      return up.conn.withDeadline(timeoutMs, { reason: 'timed out during login' }, () =>
        authenticateOnce(up, account, token),
      );
    },
    close(up) {
      up.conn.close();
    },
  };
}

/** Longest CAPA reply we read from an upstream (Dovecot's and Gmail's have about ten lines). */
const MAX_CAPA_LINES = 100;

/**
 * Asks an upstream for its capabilities without logging in: greeting, STLS where configured, CAPA,
 * QUIT. A server without CAPA (`-ERR`) has no extensions (RFC 2449 §5); the result is then empty.
 */
export async function probePop3Capabilities(
  connection: ConnectionConfig,
  server: UpstreamServer,
  options: { timeoutMs: number; signal: AbortSignal },
): Promise<string[]> {
  const { conn } = await connectUpstream(
    {
      server,
      ...(connection.ca ? { ca: connection.ca } : {}),
      timeoutMs: options.timeoutMs,
      signal: options.signal,
    },
    dialect(),
  );
  try {
    const lines = await conn.withDeadline(
      options.timeoutMs,
      timedOutAfter('CAPA', options.timeoutMs),
      async () => {
        conn.write('CAPA\r\n');
        const status = await conn.readLine();
        if (isErr(status)) return [];
        if (!isOk(status)) throw upstreamError(conn, `unexpected reply to CAPA: ${status.slice(0, 100)}`);
        const items: string[] = [];
        for (let i = 0; i < MAX_CAPA_LINES; i++) {
          const line = await conn.readLine();
          if (line === '.') return items;
          items.push(line);
        }
        throw upstreamError(conn, 'CAPA reply too long');
      },
    );
    // A polite goodbye; its answer does not matter.
    await conn
      .withDeadline(options.timeoutMs, timedOutAfter('QUIT', options.timeoutMs), () => {
        conn.write('QUIT\r\n');
        return conn.readLine();
      })
      .catch(() => undefined);
    return lines;
  } finally {
    conn.close();
  }
}

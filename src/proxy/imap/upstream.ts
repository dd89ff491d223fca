/**
 * The upstream IMAP login with an OAuth token: greeting, STARTTLS when configured, CAPABILITY when
 * needed, then `AUTHENTICATE XOAUTH2` (or OAUTHBEARER) in as few round trips as the server allows:
 * with SASL-IR (RFC 4959) the token rides on the command line.
 *
 * Gmail's error continuation: on a bad token the server sends `+ <base64 JSON>` instead of NO; the
 * client must answer (empty line for XOAUTH2, `AQ==` for OAUTHBEARER) and then gets the final NO.
 * The legacy client never sees any of this (cf. imapflow lib/commands/authenticate.js).
 */
import type { ResolvedAccount, UpstreamServer } from '../../config/types.js';
import { ProxyError } from '../../errors.js';
import type { UpstreamAuthOutcome, UpstreamLogin } from '../shared/login.js';
import { errorChallengeResponse, mechanismName, oauthBearerPayload, xoauth2Payload } from '../shared/sasl.js';
import type { UpstreamPool } from '../shared/upstream-pool.js';
import {
  accountServer,
  connectUpstream,
  type UpstreamConnection,
  type UpstreamDialect,
} from '../shared/upstream.js';

/** An error continuation more than this many times in one exchange means the server is confused. */
const MAX_CHALLENGES = 2;
/** Untagged lines tolerated while waiting for one tagged reply before login. */
const MAX_UNTAGGED = 100;
/** Largest literal we accept inside an upstream response before login. */
const MAX_UPSTREAM_LITERAL = 64 * 1024;

export interface ImapUpstream {
  conn: UpstreamConnection;
  server: UpstreamServer;
  /** Capabilities before login (upper-cased atoms); undefined until known. */
  capabilities: Set<string> | undefined;
  /** After a successful login: the upstream's capability list as sent (for the client's OK). */
  postLoginCapabilities?: string;
  /** The upstream's text after `tag OK` of the login. */
  loginText?: string;
  nextTag(): string;
}

interface TaggedReply {
  status: 'OK' | 'NO' | 'BAD';
  /** Text after the status, response code included. */
  text: string;
  untagged: string[];
}

const CAPABILITY_CODE = /^\[CAPABILITY ([^\]]*)\]\s*/i;

function parseCapabilities(list: string): Set<string> {
  return new Set(
    list
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((c) => c.toUpperCase()),
  );
}

/** Reads one response line, gluing in literals (`{n}` at the end means n raw bytes follow). */
async function readResponseLine(conn: UpstreamConnection): Promise<string> {
  let line = await conn.readLine();
  for (let i = 0; i < 16; i++) {
    const m = /\{(\d{1,10})\}$/.exec(line);
    if (!m) return line;
    const size = Number(m[1]);
    if (size > MAX_UPSTREAM_LITERAL) throw upstreamError(conn, 'response literal too large');
    const literal = await conn.readBytes(size);
    line = `${line}\r\n${literal.toString('utf8')}${await conn.readLine()}`;
  }
  throw upstreamError(conn, 'too many literals in one response');
}

function upstreamError(conn: UpstreamConnection, reason: string): ProxyError {
  return new ProxyError('upstream-unavailable', `upstream ${conn.label}: ${reason}`, { detail: reason });
}

async function readTagged(conn: UpstreamConnection, tag: string): Promise<TaggedReply> {
  const untagged: string[] = [];
  for (let i = 0; i < MAX_UNTAGGED; i++) {
    const line = await readResponseLine(conn);
    if (line.startsWith(`${tag} `)) {
      const rest = line.slice(tag.length + 1);
      const m = /^(OK|NO|BAD)\b ?(.*)$/i.exec(rest);
      if (!m) throw upstreamError(conn, `unexpected reply: ${rest.slice(0, 100)}`);
      return {
        status: (m[1] as string).toUpperCase() as TaggedReply['status'],
        text: m[2] as string,
        untagged,
      };
    }
    if (line.startsWith('* BYE')) throw upstreamError(conn, `server said ${line.slice(2, 200)}`);
    untagged.push(line);
  }
  throw upstreamError(conn, 'too many untagged responses');
}

function capabilitiesFrom(reply: TaggedReply): string | undefined {
  const code = CAPABILITY_CODE.exec(reply.text);
  if (code) return code[1];
  for (const line of reply.untagged) {
    const m = /^\* CAPABILITY (.*)$/i.exec(line);
    if (m) return m[1];
  }
  return undefined;
}

function dialect(): UpstreamDialect<Set<string> | undefined> {
  return {
    async readGreeting(conn) {
      const line = await readResponseLine(conn);
      const m = /^\* (OK|PREAUTH|BYE)\b ?(.*)$/i.exec(line);
      const status = m?.[1]?.toUpperCase();
      if (status !== 'OK') {
        throw upstreamError(
          conn,
          status === 'BYE' ? `server refused: ${m?.[2] ?? ''}` : `unexpected greeting: ${line.slice(0, 100)}`,
        );
      }
      const code = CAPABILITY_CODE.exec(m?.[2] ?? '');
      return code ? parseCapabilities(code[1] as string) : undefined;
    },
    async requestStartTls(conn) {
      conn.write('xp0 STARTTLS\r\n');
      const reply = await readTagged(conn, 'xp0');
      if (reply.status !== 'OK') throw upstreamError(conn, `STARTTLS refused: ${reply.text.slice(0, 100)}`);
    },
  };
}

async function fetchCapabilities(up: ImapUpstream): Promise<string | undefined> {
  const tag = up.nextTag();
  up.conn.write(`${tag} CAPABILITY\r\n`);
  const reply = await readTagged(up.conn, tag);
  if (reply.status !== 'OK') return undefined;
  return capabilitiesFrom(reply);
}

async function authenticateOnce(
  up: ImapUpstream,
  account: ResolvedAccount,
  token: string,
): Promise<UpstreamAuthOutcome> {
  const mechanism = account.connection.sasl;
  const payload =
    mechanism === 'xoauth2'
      ? xoauth2Payload(account.email, token)
      : oauthBearerPayload(account.email, token, up.server.host, up.server.port);
  const tag = up.nextTag();
  const name = mechanismName(mechanism);
  let sentPayload = up.capabilities?.has('SASL-IR') === true;
  up.conn.write(
    sentPayload ? `${tag} AUTHENTICATE ${name} ${payload}\r\n` : `${tag} AUTHENTICATE ${name}\r\n`,
  );
  let challenges = 0;
  const untagged: string[] = [];
  for (let i = 0; i < MAX_UNTAGGED; i++) {
    const line = await readResponseLine(up.conn);
    if (line === '+' || line.startsWith('+ ')) {
      if (!sentPayload) {
        up.conn.write(`${payload}\r\n`);
        sentPayload = true;
        continue;
      }
      // The error continuation: answer so the server sends its final NO.
      challenges += 1;
      if (challenges > MAX_CHALLENGES) throw upstreamError(up.conn, 'endless SASL challenges');
      up.conn.write(`${errorChallengeResponse(mechanism)}\r\n`);
      continue;
    }
    if (line.startsWith(`${tag} `)) {
      const rest = line.slice(tag.length + 1);
      const m = /^(OK|NO|BAD)\b ?(.*)$/i.exec(rest);
      if (!m) throw upstreamError(up.conn, `unexpected reply: ${rest.slice(0, 100)}`);
      const status = (m[1] as string).toUpperCase();
      const text = m[2] as string;
      if (status !== 'OK') return refused(up.conn, status, text, challenges > 0);
      const reply: TaggedReply = { status: 'OK', text, untagged };
      up.postLoginCapabilities = capabilitiesFrom(reply) ?? (await fetchCapabilities(up));
      up.loginText = text.replace(CAPABILITY_CODE, '');
      return { ok: true };
    }
    if (line.startsWith('* BYE')) throw upstreamError(up.conn, `server said ${line.slice(2, 200)}`);
    untagged.push(line);
  }
  throw upstreamError(up.conn, 'too many untagged responses');
}

/** RFC 5530 codes saying the server cannot log anyone in right now: temporary, a new token won't help. */
const TEMPORARY_CODES = new Set(['UNAVAILABLE', 'SERVERBUG', 'INUSE']);

/**
 * A refused AUTHENTICATE. Only a token rejection is worth one forced refresh and retry: the error
 * continuation was seen, or the NO says [AUTHENTICATIONFAILED] or has no code (or it was a BAD).
 * A temporary code (Dovecot's NO [UNAVAILABLE] when its token check fails) becomes upstream-unavailable,
 * any other code (e.g. [AUTHORIZATIONFAILED], [CONTACTADMIN], [EXPIRED]) upstream-rejected: neither
 * gets better with a new token, and refreshing would only burn the token endpoint.
 */
function refused(
  conn: UpstreamConnection,
  status: string,
  text: string,
  afterErrorContinuation: boolean,
): UpstreamAuthOutcome {
  const code = status === 'NO' ? /^\[([A-Z0-9-]+)[\] ]/i.exec(text)?.[1]?.toUpperCase() : undefined;
  const reason = text || status;
  if (code !== undefined && TEMPORARY_CODES.has(code)) {
    // The client's reply carries its own [UNAVAILABLE]; the detail is the server's words.
    const detail = text.replace(/^\[[^\]]*\]\s*/, '') || code;
    const error = new ProxyError('upstream-unavailable', `upstream ${conn.label}: AUTHENTICATE: ${reason}`, {
      detail,
    });
    conn.fail(error);
    throw error;
  }
  if (code !== undefined && code !== 'AUTHENTICATIONFAILED' && !afterErrorContinuation) {
    conn.close();
    throw new ProxyError('upstream-rejected', `upstream ${conn.label} refused the login: ${reason}`, {
      detail: reason,
    });
  }
  return { ok: false, reason, reusable: !conn.socket.destroyed };
}

/** Everything before AUTHENTICATE: connect, greeting, STARTTLS, CAPABILITY (what a warm connection has done). */
async function prepareImap(
  server: UpstreamServer,
  ca: string | undefined,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ImapUpstream> {
  const { conn, greeting } = await connectUpstream(
    { server, ...(ca ? { ca } : {}), timeoutMs, signal },
    dialect(),
  );
  let n = 0;
  const up: ImapUpstream = {
    conn,
    server,
    // Capabilities from before STARTTLS must not be trusted (RFC 9051 §6.2.1).
    capabilities: server.tls === 'starttls' ? undefined : greeting,
    nextTag: () => `xp${++n}`,
  };
  if (!up.capabilities) {
    const list = await conn.withDeadline(timeoutMs, { reason: 'timed out during CAPABILITY' }, () =>
      fetchCapabilities(up),
    );
    up.capabilities = list ? parseCapabilities(list) : new Set();
  }
  return up;
}

/**
 * The IMAP half of `performLogin`. `timeoutMs` bounds the connect phase and, again, each login try;
 * with a `pool`, the connect may be a warm connection's (the same dialogue, done earlier).
 */
export function imapUpstreamLogin(timeoutMs: number, pool?: UpstreamPool): UpstreamLogin<ImapUpstream> {
  return {
    async connect(account, signal) {
      const server = accountServer(account, 'imap');
      const ca = account.connection.ca;
      const prepare = (s: AbortSignal): Promise<ImapUpstream> => prepareImap(server, ca, timeoutMs, s);
      return pool ? pool.acquire({ protocol: 'imap', server, ca }, prepare, signal) : prepare(signal);
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

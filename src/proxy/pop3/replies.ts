/**
 * Every reply the POP3 front sends itself, and the one place where a login failure becomes a reply.
 * Response codes are RFC 2449 §8 (`[SYS/TEMP]`, `[SYS/PERM]`, `[IN-USE]`) and RFC 3206 (`[AUTH]`).
 * Replies are strings without the final CRLF (the session adds it); multi-line ones use CRLF inside.
 */
import type { TlsMode } from '../../config/types.js';
import type { ProxyError } from '../../errors.js';
import { loginAllowed, tlsOffered } from '../shared/front.js';
import { LOGIN_PASSWORD_PROMPT, LOGIN_USERNAME_PROMPT } from '../shared/sasl.js';
import type { Advertised, IntersectionRule } from '../shared/upstream-capabilities.js';

export const SERVER_NAME = 'xoauth-proxy';

export const REPLY = {
  /** No APOP timestamp on purpose: APOP needs the plain password on our side, which we never have. */
  greeting: `+OK ${SERVER_NAME} POP3 ready`,
  bye: `+OK ${SERVER_NAME} signing off`,
  userOk: '+OK Send PASS',
  passWithoutUser: '-ERR Send USER first',
  beginTls: '+OK Begin TLS negotiation',
  tlsActive: '-ERR TLS already active',
  stlsUnavailable: '-ERR STLS not available',
  /** RFC 2595 §4 lets a server refuse clear-text logins until STLS; cf. IMAP's LOGINDISABLED. */
  tlsRequired: '-ERR [AUTH] Plain text login disallowed: use STLS first',
  emptyChallenge: '+ ',
  authCancelled: '-ERR Authentication cancelled',
  malformedPlain: '-ERR Malformed AUTH PLAIN response',
  malformedLogin: '-ERR Malformed AUTH LOGIN response',
  /** RFC 5034 AUTH LOGIN: the customary base64 "Username:" and "Password:" challenges. */
  loginUsername: `+ ${LOGIN_USERNAME_PROMPT}`,
  loginPassword: `+ ${LOGIN_PASSWORD_PROMPT}`,
  unknownMechanism: '-ERR Unsupported authentication mechanism',
  mechanisms: '+OK\r\nPLAIN\r\nLOGIN\r\n.',
  apop: '-ERR APOP not supported: use USER/PASS or AUTH PLAIN',
  needsLogin: '-ERR Not logged in: log in first with USER/PASS or AUTH PLAIN',
  unknownCommand: '-ERR Unknown command',
  lineTooLong: '-ERR Line too long, closing connection',
  tooManyCommands: '-ERR Too many commands before login, closing connection',
  tooManyFailures: '-ERR Too many failed logins, closing connection',
  idleTimeout: '-ERR Disconnected for inactivity',
  http: '-ERR HTTP requests are not accepted here, closing connection',
  shutdown: '-ERR [SYS/TEMP] Server shutting down',
  /** For a client refused by the connection caps. */
  busy: '-ERR [SYS/TEMP] Too many connections, try again later',
} as const;

/**
 * The upstream's CAPA items that may be advertised before login: after it the client talks to the
 * upstream through a byte pipe, so the TRANSACTION-state extensions work as the upstream has them.
 * Never the upstream's USER, SASL or STLS (those are our dialogue's), nor items about the server
 * itself (IMPLEMENTATION) or commands our AUTHORIZATION dialogue does not know (UTF8, LANG).
 * RESP-CODES and AUTH-RESP-CODE are ours in any case.
 */
export const CAPA_PASS_THROUGH: IntersectionRule = {
  passThrough: new Set(['TOP', 'UIDL', 'PIPELINING', 'EXPIRE', 'LOGIN-DELAY']),
};

/**
 * The CAPA reply (RFC 2449): our login items, then what every reachable upstream has in common (while
 * one of them is not known, none: the client may still ask the upstream's CAPA after login).
 * RESP-CODES and AUTH-RESP-CODE are true: our failures carry `[SYS/TEMP]` and `[AUTH]`.
 */
export function capaReply(tls: TlsMode, secure: boolean, upstream: Advertised): string {
  const lines = ['+OK Capability list follows'];
  if (loginAllowed(tls, secure)) lines.push('USER', 'SASL PLAIN LOGIN');
  lines.push('RESP-CODES', 'AUTH-RESP-CODE');
  if (upstream.kind === 'learned') lines.push(...upstream.extensions);
  if (tlsOffered(tls, secure)) lines.push('STLS');
  lines.push('.');
  return lines.join('\r\n');
}

/** Text safe to put in a reply: one line, printable, bounded. */
export function safeText(text: string, max = 300): string {
  // eslint-disable-next-line no-control-regex
  const flat = text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/** The `+OK` for a successful login: the upstream's own greeting text ("Welcome.") when it gave one. */
export function loginSucceededReply(upstreamText: string | undefined): string {
  const text = upstreamText === undefined ? '' : safeText(upstreamText);
  return `+OK ${text.length > 0 ? text : 'Logged in'}`;
}

/** Drops the `-ERR` and a leading `[CODE]` from an upstream reply, so we do not nest response codes. */
function upstreamReason(detail: string | undefined): string {
  if (detail === undefined) return 'no reason given';
  return detail.replace(/^-ERR ?/, '').replace(/^\[[^\]]*\]\s*/, '') || 'no reason given';
}

/**
 * The reply for a failed login.
 *  - bad-credentials: one fixed text, so a client cannot tell an unknown user from a wrong password.
 *  - needs-consent: where the mailbox owner grants access.
 *  - token-unavailable / upstream-unavailable: [SYS/TEMP], so clients keep the password and retry.
 *  - upstream-rejected: the upstream's reason.
 */
export function loginFailureReply(error: ProxyError, consentHint?: string): string {
  switch (error.code) {
    case 'bad-credentials':
      return '-ERR [AUTH] Authentication failed';
    case 'needs-consent':
      return `-ERR [AUTH] ${safeText(
        `Access to this mailbox has not been granted or was revoked. ${consentHint ?? 'Ask the proxy administrator.'}`,
        500,
      )}`;
    case 'token-unavailable':
      return `-ERR [SYS/TEMP] ${safeText(`Cannot get an access token right now, try again later (${error.detail ?? 'token endpoint unreachable'})`)}`;
    case 'upstream-unavailable':
      return `-ERR [SYS/TEMP] ${safeText(`Mail server unavailable, try again later (${error.detail ?? 'connection failed'})`)}`;
    case 'upstream-rejected':
      return `-ERR [AUTH] ${safeText(`Mail server refused the login: ${upstreamReason(error.detail)}`)}`;
    default:
      return '-ERR [SYS/TEMP] Internal error, try again later';
  }
}

const SYNTAX = {
  USER: '-ERR Syntax: USER name',
  PASS: '-ERR Syntax: PASS password',
  AUTH: '-ERR Syntax: AUTH mechanism [initial-response]',
  STLS: '-ERR Syntax: STLS',
} as const;

/** The reply to a known command given arguments it cannot take. */
export function syntaxError(command: keyof typeof SYNTAX): string {
  return SYNTAX[command];
}

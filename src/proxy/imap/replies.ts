/**
 * Every reply the IMAP front sends itself: capabilities, greeting, untagged BYE lines, the text of each
 * tagged reply (the machine puts the tag in front) and the reply for each login failure code (RFC 5530
 * response codes). Nothing here ever contains a password.
 */
import type { TlsMode } from '../../config/types.js';
import type { ProxyError } from '../../errors.js';
import { loginAllowed, tlsOffered } from '../shared/front.js';
import { LOGIN_PASSWORD_PROMPT, LOGIN_USERNAME_PROMPT } from '../shared/sasl.js';

export const SERVER_NAME = 'xoauth-proxy';

/** What the front handles itself before login; everything else is the upstream's to announce after it. */
export function preAuthCapabilities(tls: TlsMode, secure: boolean): string[] {
  const caps = ['IMAP4rev1', 'LITERAL+', 'SASL-IR', 'ID'];
  if (!loginAllowed(tls, secure)) {
    // RFC 9051 §6.2.3: no LOGIN until TLS; advertising AUTH= mechanisms would invite a cleartext try.
    caps.push('STARTTLS', 'LOGINDISABLED');
  } else {
    caps.push('AUTH=PLAIN', 'AUTH=LOGIN');
    if (tlsOffered(tls, secure)) caps.push('STARTTLS');
  }
  return caps;
}

export function greeting(tls: TlsMode, secure: boolean): string {
  return `* OK [CAPABILITY ${preAuthCapabilities(tls, secure).join(' ')}] ${SERVER_NAME} ready`;
}

/** For a client refused by the connection caps. */
export const BUSY = '* BYE [UNAVAILABLE] Too many connections, try again later';

/** Untagged BYE lines, by why the front closes. */
export const BYE = {
  shutdown: '* BYE Server shutting down',
  idle: '* BYE Idle for too long before login',
  logout: '* BYE Logging out',
  tooManyFailures: '* BYE Too many failed login attempts',
  tooManyCommands: '* BYE Too many commands before login',
  'line-too-long': '* BYE Command line too long',
  'literal-too-large': '* BYE Literal too large',
  'too-many-literals': '* BYE Too many literals in one command',
  'command-too-large': '* BYE Literals too large in one command',
} as const;

/** Continuation requests (RFC 9051 §7.5). */
export const CONTINUE = {
  literal: '+ Ready for literal data',
  /** RFC 4959: an empty challenge before the client's PLAIN response. */
  empty: '+ ',
  loginUsername: `+ ${LOGIN_USERNAME_PROMPT}`,
  loginPassword: `+ ${LOGIN_PASSWORD_PROMPT}`,
} as const;

/** The text after the tag of each tagged reply the front makes itself. */
export const REPLY = {
  capabilityDone: 'OK CAPABILITY completed',
  noopDone: 'OK NOOP completed',
  logoutDone: 'OK LOGOUT completed',
  idDone: 'OK ID completed',
  beginTls: 'OK Begin TLS negotiation now',
  tlsActive: 'BAD TLS is already active',
  startTlsUnavailable: 'BAD STARTTLS is not available here',
  tlsRequired: 'NO [PRIVACYREQUIRED] Run STARTTLS first',
  loginArguments: 'BAD LOGIN needs a user name and a password',
  idArguments: 'BAD ID takes one argument',
  authenticateArguments: 'BAD AUTHENTICATE needs a mechanism and at most one initial response',
  // The command name is not echoed: after a framing mix-up it could be part of a password.
  needsLogin: 'BAD Log in first (LOGIN or AUTHENTICATE): command not available before login',
  authenticationFailed: 'NO [AUTHENTICATIONFAILED] Authentication failed',
  unknownMechanism: 'NO [CANNOT] Unsupported authentication mechanism; use PLAIN or LOGIN',
  badInitialResponse: 'BAD Invalid base64 in initial response',
  badBase64: 'BAD Invalid base64',
  badSaslResponse: 'BAD Invalid SASL response',
  authCancelled: 'BAD Authentication cancelled',
} as const;

/** A tagged reply: the command's tag (or `*` when none could be read) and its text. */
export function tagged(tag: string | undefined, text: string): string {
  return `${tag ?? '*'} ${text}`;
}

/** A command that takes no arguments was given some. */
export function noArguments(command: string): string {
  return `BAD ${command} takes no arguments`;
}

/** A command the parser or the SASL decoder could not make sense of, with its reason. */
export function malformed(reason: string): string {
  return `BAD ${safeText(reason)}`;
}

export function capabilityLine(tls: TlsMode, secure: boolean): string {
  return `* CAPABILITY ${preAuthCapabilities(tls, secure).join(' ')}`;
}

export const ID_LINE = `* ID ("name" "${SERVER_NAME}")`;

/** The tagged OK for a login the upstream accepted, with its capabilities when it gave them. */
export function loggedIn(capabilities: string | undefined, upstreamText: string | undefined): string {
  const code = capabilities ? `[CAPABILITY ${capabilities}] ` : '';
  const text = safeText(upstreamText ?? 'Logged in') || 'Logged in';
  return `OK ${code}${text}`;
}

/** Text safe to put after a response code: one line, printable, bounded. */
export function safeText(text: string, max = 300): string {
  // eslint-disable-next-line no-control-regex
  const flat = text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/** Drops a leading `[CODE ...]` from an upstream's NO text, so we do not nest response codes. */
function withoutResponseCode(text: string): string {
  return text.replace(/^\[[^\]]*\]\s*/, '');
}

/** RFC 5530 codes of a permanent login refusal that the client is better off seeing as sent. */
const PASSED_ON_CODES = new Set(['AUTHORIZATIONFAILED', 'CONTACTADMIN', 'EXPIRED', 'PRIVACYREQUIRED']);

function refusalCode(text: string): string {
  const code = /^\[([A-Z0-9-]+)\]/i.exec(text)?.[1]?.toUpperCase();
  return code !== undefined && PASSED_ON_CODES.has(code) ? code : 'AUTHENTICATIONFAILED';
}

/**
 * The tagged reply (without the tag) for a failed login.
 *  - bad-credentials: one fixed text, so a client cannot tell an unknown user from a wrong password.
 *  - needs-consent: the hint where the mailbox owner grants access.
 *  - token-unavailable / upstream-unavailable: [UNAVAILABLE], temporary; clients retry later.
 *  - upstream-rejected: the upstream's reason, under its own RFC 5530 code when that is one of
 *    AUTHORIZATIONFAILED, CONTACTADMIN, EXPIRED, PRIVACYREQUIRED (else AUTHENTICATIONFAILED).
 */
export function loginFailureReply(error: ProxyError, consentHint?: string): string {
  switch (error.code) {
    case 'bad-credentials':
      return 'NO [AUTHENTICATIONFAILED] Authentication failed';
    case 'needs-consent':
      return `NO [AUTHENTICATIONFAILED] ${safeText(
        `Access to this mailbox has not been granted or was revoked. ${consentHint ?? 'Ask the proxy administrator.'}`,
        500,
      )}`;
    case 'token-unavailable':
      return `NO [UNAVAILABLE] ${safeText(`Cannot get an access token right now, try again later (${error.detail ?? 'token endpoint unreachable'})`)}`;
    case 'upstream-unavailable':
      return `NO [UNAVAILABLE] ${safeText(`Mail server unreachable, try again later (${error.detail ?? 'connection failed'})`)}`;
    case 'upstream-rejected':
      return `NO [${refusalCode(error.detail ?? '')}] ${safeText(`Mail server refused the login: ${withoutResponseCode(error.detail ?? 'no reason given')}`)}`;
    default:
      return 'NO [UNAVAILABLE] Internal error, try again later';
  }
}

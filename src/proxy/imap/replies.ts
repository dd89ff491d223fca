/**
 * The one place where the IMAP front turns outcomes into wire text: capabilities, greeting, and the
 * reply for each login failure code (RFC 5530 response codes). Nothing here ever contains a password.
 */
import type { TlsMode } from '../../config/types.js';
import type { ProxyError } from '../../errors.js';
import { loginAllowed, tlsOffered } from '../shared/front.js';

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

/** Text safe to put after a response code: one line, printable, bounded. */
/** For a client refused by the connection caps. */
export const BUSY = '* BYE [UNAVAILABLE] Too many connections, try again later';

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

/**
 * SASL payloads, shared by the IMAP and SMTP fronts. Everything here is a pure function on strings.
 *
 * Upstream (we are the client): XOAUTH2 (Google/Microsoft) and OAUTHBEARER (RFC 7628).
 * Downstream (we are the server): PLAIN (RFC 4616) and the LOGIN prompts.
 */

import { ProxyError } from '../../errors.js';

const SOH = '\x01';

/**
 * Control characters (^A separates the fields), spaces in the user and the token, and DEL. A user or
 * token carrying one could add or replace fields of the payload (a second `auth=`), so it is refused
 * here even though usernames are checked long before: the payload must never say more than we mean.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x20\x7f]/;

function assertSafe(user: string, accessToken: string): void {
  if (user === '' || UNSAFE.test(user)) {
    throw new ProxyError('bad-credentials', 'mailbox address has control characters or spaces', {
      detail: 'Invalid username or password',
    });
  }
  if (accessToken === '' || UNSAFE.test(accessToken)) {
    throw new ProxyError('token-unavailable', 'access token has control characters or spaces');
  }
}

/** XOAUTH2 initial response, base64: `user=U^Aauth=Bearer T^A^A` (developers.google.com/gmail/imap/xoauth2-protocol). */
export function xoauth2Payload(user: string, accessToken: string): string {
  assertSafe(user, accessToken);
  return Buffer.from(`user=${user}${SOH}auth=Bearer ${accessToken}${SOH}${SOH}`, 'utf8').toString('base64');
}

/**
 * OAUTHBEARER initial response, base64 (RFC 7628 §3.1): GS2 header `n,a=U,` then `^A`-separated
 * key=value pairs. `,` and `=` in the authzid are escaped as `=2C` / `=3D` (RFC 5801 saslname).
 */
export function oauthBearerPayload(user: string, accessToken: string, host: string, port: number): string {
  assertSafe(user, accessToken);
  const authzid = user.replace(/=/g, '=3D').replace(/,/g, '=2C');
  const text = `n,a=${authzid},${SOH}host=${host}${SOH}port=${port}${SOH}auth=Bearer ${accessToken}${SOH}${SOH}`;
  return Buffer.from(text, 'utf8').toString('base64');
}

export type OAuthMechanism = 'xoauth2' | 'oauthbearer';

/** The SASL mechanism name as sent on the wire. */
export function mechanismName(mechanism: OAuthMechanism): 'XOAUTH2' | 'OAUTHBEARER' {
  return mechanism === 'xoauth2' ? 'XOAUTH2' : 'OAUTHBEARER';
}

/**
 * What a client must answer to the server's error challenge (`+ <base64 JSON>` / `334 <base64 JSON>`)
 * so that the server sends its final failure: an empty response for XOAUTH2 (Google's documented
 * behaviour), a single ^A (`AQ==`) for OAUTHBEARER (RFC 7628 §3.2.3).
 */
export function errorChallengeResponse(mechanism: OAuthMechanism): string {
  return mechanism === 'xoauth2' ? '' : 'AQ==';
}

/** The JSON an XOAUTH2/OAUTHBEARER server sends in its error challenge, if it decodes. */
export interface SaslErrorChallenge {
  status?: string;
  schemes?: string;
  scope?: string;
}

export function decodeErrorChallenge(base64: string): SaslErrorChallenge | undefined {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(base64.trim(), 'base64').toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const o = parsed as Record<string, unknown>;
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
    return { status: str(o.status), schemes: str(o.schemes), scope: str(o.scope) };
  } catch {
    return undefined;
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 decoding (Buffer.from ignores junk silently; a client sending junk should get BAD). */
export function decodeBase64Strict(text: string): Buffer | undefined {
  if (!BASE64.test(text)) return undefined;
  return Buffer.from(text, 'base64');
}

export interface PlainCredentials {
  authzid: string;
  username: string;
  password: string;
}

/**
 * Decodes an RFC 4616 PLAIN message (`authzid NUL authcid NUL passwd`, base64, UTF-8).
 * An authzid that differs from the authcid is refused: we cannot act as someone else.
 */
export function decodePlain(base64: string): PlainCredentials | { error: string } {
  const raw = decodeBase64Strict(base64);
  if (!raw) return { error: 'Invalid base64' };
  const text = raw.toString('utf8');
  const parts = text.split('\0');
  if (parts.length !== 3) return { error: 'Malformed PLAIN message' };
  const [authzid, username, password] = parts as [string, string, string];
  if (username === '' || password === '') return { error: 'Empty user name or password' };
  if (authzid !== '' && authzid !== username) return { error: 'Authorization identity not supported' };
  return { authzid, username, password };
}

/** Builds a PLAIN message (for tests and clients). */
export function encodePlain(username: string, password: string, authzid = ''): string {
  return Buffer.from(`${authzid}\0${username}\0${password}`, 'utf8').toString('base64');
}

/** The customary AUTH LOGIN prompts, base64 of `Username:` and `Password:`. */
export const LOGIN_USERNAME_PROMPT = 'VXNlcm5hbWU6';
export const LOGIN_PASSWORD_PROMPT = 'UGFzc3dvcmQ6';

/** Decodes one AUTH LOGIN response (base64 UTF-8 text); undefined when it is not valid base64. */
export function decodeLoginResponse(base64: string): string | undefined {
  const raw = decodeBase64Strict(base64);
  return raw?.toString('utf8');
}

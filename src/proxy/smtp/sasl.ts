/**
 * Decoding of the client's SASL responses for AUTH PLAIN (RFC 4616) and AUTH LOGIN (the de-facto
 * draft-murchison-sasl-login). Pure; the decoded password only ever leaves in an `authenticate` action.
 */

export type SaslFailure = 'bad-base64' | 'malformed';
export type Decoded<T> = { ok: true; value: T } | { ok: false; failure: SaslFailure };

/** RFC 4648 alphabet; padding optional because some old clients leave it off. */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Strict base64 (Node's decoder silently skips junk, which would turn garbage into a login attempt).
 * RFC 4954 §4: a lone `=` is an empty initial response.
 */
export function decodeBase64(text: string): Buffer | undefined {
  const s = text.trim();
  if (s === '=') return Buffer.alloc(0);
  if (!BASE64.test(s)) return undefined;
  const body = s.replace(/=+$/, '');
  if (body.length % 4 === 1) return undefined;
  if (s.length !== body.length && s.length % 4 !== 0) return undefined;
  return Buffer.from(body, 'base64');
}

export interface PlainCredentials {
  username: string;
  password: string;
}

/**
 * `[authzid] NUL authcid NUL passwd`. An authorization identity other than the user itself would mean
 * "log me in as somebody else", which the proxy does not offer, so it is treated as malformed.
 */
export function decodePlain(text: string): Decoded<PlainCredentials> {
  const raw = decodeBase64(text);
  if (raw === undefined) return { ok: false, failure: 'bad-base64' };
  const first = raw.indexOf(0);
  const second = first === -1 ? -1 : raw.indexOf(0, first + 1);
  if (first === -1 || second === -1 || raw.indexOf(0, second + 1) !== -1)
    return { ok: false, failure: 'malformed' };
  const authzid = raw.subarray(0, first).toString('utf8');
  const username = raw.subarray(first + 1, second).toString('utf8');
  const password = raw.subarray(second + 1).toString('utf8');
  if (username.length === 0 || (authzid.length > 0 && authzid !== username)) {
    return { ok: false, failure: 'malformed' };
  }
  return { ok: true, value: { username, password } };
}

/** One AUTH LOGIN step (user name or password): base64 of UTF-8 text. */
export function decodeLoginField(text: string): Decoded<string> {
  const raw = decodeBase64(text);
  if (raw === undefined) return { ok: false, failure: 'bad-base64' };
  return { ok: true, value: raw.toString('utf8') };
}

/**
 * The client's SASL responses for AUTH PLAIN (RFC 4616) and AUTH LOGIN, in SMTP's framing (RFC 4954):
 * a thin layer over the shared decoders that adds SMTP's `=` for an empty initial response and tells
 * "not base64" (501 5.5.2) apart from "base64 but not a PLAIN message".
 */
import {
  decodeBase64Strict,
  decodeLoginResponse,
  decodePlain as decodePlainMessage,
} from '../shared/sasl.js';

export type SaslFailure = 'bad-base64' | 'malformed';
export type Decoded<T> = { ok: true; value: T } | { ok: false; failure: SaslFailure };

export interface PlainCredentials {
  username: string;
  password: string;
}

/** RFC 4954 §4: a lone `=` stands for an empty response. */
function normalize(text: string): string {
  const s = text.trim();
  return s === '=' ? '' : s;
}

export function decodePlain(text: string): Decoded<PlainCredentials> {
  const s = normalize(text);
  if (decodeBase64Strict(s) === undefined) return { ok: false, failure: 'bad-base64' };
  const decoded = decodePlainMessage(s);
  if ('error' in decoded) return { ok: false, failure: 'malformed' };
  return { ok: true, value: { username: decoded.username, password: decoded.password } };
}

/** One AUTH LOGIN step (user name or password). */
export function decodeLoginField(text: string): Decoded<string> {
  const value = decodeLoginResponse(normalize(text));
  return value === undefined ? { ok: false, failure: 'bad-base64' } : { ok: true, value };
}

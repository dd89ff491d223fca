/**
 * Local passwords as salted scrypt hashes (memory-hard, from node:crypto), in a PHC-like string:
 *   $scrypt$ln=15,r=8,p=1$<salt, base64 unpadded>$<hash, base64 unpadded>
 * The cost parameters travel with the hash, so they can be raised later without breaking old hashes.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { ProxyError } from '../errors.js';

export interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  ln: number;
  r: number;
  p: number;
}

export const DEFAULT_SCRYPT_PARAMS: ScryptParams = { ln: 15, r: 8, p: 1 };

/** Bounds for hashes we accept: below them a hash is too weak, above them one check could exhaust memory. */
const LIMITS = { ln: [10, 20], r: [1, 32], p: [1, 16] } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
const B64 = '[A-Za-z0-9+/]+';
const HASH_RE = new RegExp(`^\\$scrypt\\$ln=(\\d{1,2}),r=(\\d{1,2}),p=(\\d{1,2})\\$(${B64})\\$(${B64})$`);

export const PASSWORD_HASH_FORMAT = '$scrypt$ln=<n>,r=<n>,p=<n>$<salt>$<hash>';

interface ParsedHash extends ScryptParams {
  salt: Buffer;
  key: Buffer;
}

function inRange(value: number, [min, max]: readonly [number, number]): boolean {
  return value >= min && value <= max;
}

function parse(hash: string): ParsedHash | undefined {
  const m = HASH_RE.exec(hash);
  if (!m) return undefined;
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (!inRange(ln, LIMITS.ln) || !inRange(r, LIMITS.r) || !inRange(p, LIMITS.p)) return undefined;
  const salt = Buffer.from(m[4] as string, 'base64');
  const key = Buffer.from(m[5] as string, 'base64');
  if (salt.length < 8 || key.length < 16) return undefined;
  return { ln, r, p, salt, key };
}

/** True when `value` is a hash this module can verify (and so is not a plain-text password). */
export function isPasswordHash(value: string): boolean {
  return parse(value) !== undefined;
}

function derive(password: string, salt: Buffer, params: ScryptParams, length: number): Promise<Buffer> {
  const N = 2 ** params.ln;
  const options: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 256 * N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, length, options, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

const b64 = (buf: Buffer) => buf.toString('base64').replace(/=+$/, '');

export async function hashPassword(
  password: string,
  params: ScryptParams = DEFAULT_SCRYPT_PARAMS,
): Promise<string> {
  if (!inRange(params.ln, LIMITS.ln) || !inRange(params.r, LIMITS.r) || !inRange(params.p, LIMITS.p)) {
    throw new RangeError(`scrypt parameters out of range: ln=${params.ln},r=${params.r},p=${params.p}`);
  }
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, params, KEY_BYTES);
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(key)}`;
}

/**
 * Constant-time check of `password` against `hash`. A malformed hash is a configuration problem, not a
 * wrong password: it throws ProxyError 'config' so the admin sees it.
 */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const parsed = parse(hash);
  if (!parsed) {
    throw new ProxyError(
      'config',
      `not a password hash (expected ${PASSWORD_HASH_FORMAT}); create one with \`xoauth-proxy hash-password\``,
    );
  }
  const key = await derive(password, parsed.salt, parsed, parsed.key.length);
  return timingSafeEqual(key, parsed.key);
}

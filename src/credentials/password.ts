/**
 * Local passwords as salted scrypt hashes (memory-hard, from node:crypto), in a PHC-like string:
 *   $scrypt$ln=15,r=8,p=1$<salt, base64 unpadded>$<hash, base64 unpadded>
 * The cost parameters travel with the hash, so they can be raised later without breaking old hashes.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import {
  DEFAULT_SCRYPT_PARAMS,
  KEY_BYTES,
  parsePasswordHash,
  PASSWORD_HASH_FORMAT,
  SALT_BYTES,
  scryptParamsInRange,
  type ScryptParams,
} from '../config/password-hash.js';
import { ProxyError } from '../errors.js';

export {
  DEFAULT_SCRYPT_PARAMS,
  isPasswordHash,
  PASSWORD_HASH_FORMAT,
  type ScryptParams,
} from '../config/password-hash.js';

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
  if (!scryptParamsInRange(params)) {
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
  const parsed = parsePasswordHash(hash);
  if (!parsed) {
    throw new ProxyError(
      'config',
      `not a password hash (expected ${PASSWORD_HASH_FORMAT}); create one with \`xoauth-proxy hash-password\``,
    );
  }
  const key = await derive(password, parsed.salt, parsed, parsed.key.length);
  return timingSafeEqual(key, parsed.key);
}

/**
 * The format of a local password hash, as it appears in the config:
 *   $scrypt$ln=15,r=8,p=1$<salt, base64 unpadded>$<hash, base64 unpadded>
 * The config validates it at load; credentials/password.ts derives and verifies. Kept here so that
 * checking a config needs no crypto and config does not depend on credentials.
 */
export interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  ln: number;
  r: number;
  p: number;
}

export const DEFAULT_SCRYPT_PARAMS: ScryptParams = { ln: 15, r: 8, p: 1 };

/** Bounds for hashes we accept: below them a hash is too weak, above them one check could exhaust memory. */
const LIMITS = { ln: [10, 20], r: [1, 32], p: [1, 16] } as const;
export const SALT_BYTES = 16;
export const KEY_BYTES = 32;
const B64 = '[A-Za-z0-9+/]+';
const HASH_RE = new RegExp(`^\\$scrypt\\$ln=(\\d{1,2}),r=(\\d{1,2}),p=(\\d{1,2})\\$(${B64})\\$(${B64})$`);

export const PASSWORD_HASH_FORMAT = '$scrypt$ln=<n>,r=<n>,p=<n>$<salt>$<hash>';

export interface ParsedHash extends ScryptParams {
  salt: Buffer;
  key: Buffer;
}

function inRange(value: number, [min, max]: readonly [number, number]): boolean {
  return value >= min && value <= max;
}

/** True when the cost parameters are inside the bounds above. */
export function scryptParamsInRange({ ln, r, p }: ScryptParams): boolean {
  return inRange(ln, LIMITS.ln) && inRange(r, LIMITS.r) && inRange(p, LIMITS.p);
}

export function parsePasswordHash(hash: string): ParsedHash | undefined {
  const m = HASH_RE.exec(hash);
  if (!m) return undefined;
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (!scryptParamsInRange({ ln, r, p })) return undefined;
  const salt = Buffer.from(m[4] as string, 'base64');
  const key = Buffer.from(m[5] as string, 'base64');
  if (salt.length < 8 || key.length < 16) return undefined;
  return { ln, r, p, salt, key };
}

/** True when `value` is a hash credentials can verify (and so is not a plain-text password). */
export function isPasswordHash(value: string): boolean {
  return parsePasswordHash(value) !== undefined;
}

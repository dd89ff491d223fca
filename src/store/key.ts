/**
 * The store key: 32 random bytes, from `XOAUTH_PROXY_KEY` (base64) or a key file that is created once,
 * exclusively and with mode 0600, and never overwritten: losing the key loses every grant, so a file
 * that is there but unreadable is an error to report, never a reason to make a new key.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { ProxyError } from '../errors.js';

export const KEY_ENV = 'XOAUTH_PROXY_KEY';
export const KEY_BYTES = 32;

/** Where the store reports things worth an admin's attention (a pino Logger fits). */
export interface StoreWarnings {
  warn(fields: object, message: string): void;
}

/** Without a logger (CLI commands), a warning goes to stderr: it must not pass unseen. */
export const STDERR_WARNINGS: StoreWarnings = {
  warn: (_fields, message) => {
    process.stderr.write(`warning: ${message}\n`);
  },
};

/**
 * Says so when a secret file is readable or writable by others (mode & 0o077). Not refused: an admin
 * may have reasons (a group-readable backup setup), but it should be a choice.
 */
export function warnIfOpenMode(file: string, what: string, warnings: StoreWarnings = STDERR_WARNINGS): void {
  let stat;
  try {
    stat = statSync(file);
  } catch {
    return;
  }
  const mode = stat.mode & 0o777;
  if ((mode & 0o077) === 0) return;
  const octal = `0${mode.toString(8).padStart(3, '0')}`;
  // A directory open to others lets them list, and if writable replace, the store and key files.
  const [risk, wanted] = stat.isDirectory()
    ? ['other users on this machine may list or change the files in it', '700']
    : ['other users on this machine may read it', '600'];
  warnings.warn(
    { file, mode: octal },
    `The ${what} ${file} has mode ${octal}: ${risk}. Run \`chmod ${wanted} ${file}\` unless that is intended.`,
  );
}

export interface StoreKey {
  key: Buffer;
  /** Where it came from, for messages ("XOAUTH_PROXY_KEY" or the key file path). */
  source: string;
  /** True when this call created the key file. */
  created: boolean;
}

export function parseKey(text: string, source: string): Buffer {
  const trimmed = text.trim();
  const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, 'base64') : Buffer.alloc(0);
  if (key.length !== KEY_BYTES) {
    throw new ProxyError(
      'store',
      `The store key from ${source} is malformed: it must be ${KEY_BYTES} random bytes in base64 ` +
        `(44 characters, e.g. from \`openssl rand -base64 32\`), got ${trimmed.length} characters` +
        (key.length > 0 ? ` decoding to ${key.length} bytes` : '') +
        '.',
    );
  }
  return key;
}

/**
 * `mayCreate: false` when a store already exists: a missing key file then means the key was lost or
 * the wrong path is configured, and a fresh key would only hide that (the store stays unreadable).
 */
export function loadStoreKey(
  keyFile: string,
  env: NodeJS.ProcessEnv = process.env,
  options: { mayCreate?: boolean; storePath?: string; logger?: StoreWarnings } = {},
): StoreKey {
  const fromEnv = env[KEY_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    return { key: parseKey(fromEnv, `the environment variable ${KEY_ENV}`), source: KEY_ENV, created: false };
  }
  const existing = readKeyFile(keyFile);
  if (existing) {
    warnIfOpenMode(keyFile, 'store key file', options.logger);
    return { key: existing, source: keyFile, created: false };
  }
  if (options.mayCreate === false) {
    throw new ProxyError(
      'store',
      `The token store ${options.storePath ?? ''} exists but its key file ${keyFile} does not, and ` +
        `${KEY_ENV} is not set. Restore the key file (or set ${KEY_ENV} to the key the store was written ` +
        `with); no new key was made, and the store was left untouched.`,
    );
  }
  const created = createKeyFile(keyFile);
  if (created) return { key: created, source: keyFile, created: true };
  // Another process created it between our read and our create: use theirs.
  const theirs = readKeyFile(keyFile);
  if (!theirs) throw new ProxyError('store', `The key file ${keyFile} vanished while it was being created.`);
  return { key: theirs, source: keyFile, created: false };
}

/** Makes a new directory entry (the linked key file) durable; the file's own fsync does not. */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (err) {
    // Some filesystems refuse fsync on a directory (EINVAL, EISDIR on a few platforms); the file
    // itself is synced, which is the part that matters most.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw err;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function readKeyFile(keyFile: string): Buffer | undefined {
  let text: string;
  try {
    text = readFileSync(keyFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ProxyError(
      'store',
      `Cannot read the key file ${keyFile}: ${(err as Error).message}. ` +
        `Fix its permissions (it must be readable by the proxy's user, mode 0600), or set ${KEY_ENV}.`,
      { cause: err },
    );
  }
  if (text.trim() === '') {
    throw new ProxyError(
      'store',
      `The key file ${keyFile} is empty (a crash while it was first written?). No new key was made: ` +
        `if the token store has never held data, delete both the key file and the store and start ` +
        `again; otherwise restore the key from a backup, or set ${KEY_ENV} to it.`,
    );
  }
  return parseKey(text, `the key file ${keyFile}`);
}

/**
 * Writes a new key to a temporary file and hard-links it into place: link() fails if the target
 * exists, so two first starts at once cannot both win, and nobody ever reads a half-written key.
 */
function createKeyFile(keyFile: string): Buffer | undefined {
  mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
  const key = randomBytes(KEY_BYTES);
  const tmp = `${keyFile}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${key.toString('base64')}\n`);
    // On disk before anything is encrypted with it: a crash right after first start must not leave
    // an empty key file next to a store written with a key that is gone.
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    chmodSync(tmp, 0o600); // the umask may have narrowed it further, never widened; be explicit
    linkSync(tmp, keyFile);
    syncDirectory(dirname(keyFile));
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw new ProxyError('store', `Cannot create the key file ${keyFile}: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    unlinkSync(tmp);
  }
}

/**
 * App passwords: local passwords for mail clients, one per device, each revocable. Only a scrypt hash
 * is stored; the password is shown once. They only answer "may this client use this account?" and are
 * never part of how tokens are protected, so revoking or forgetting one never touches the grant.
 */
import { randomInt } from 'node:crypto';
import { hashPassword } from './password.js';
import type { AppPasswordRecord, AppPasswordStore } from '../store/types.js';

/** No 0/o, 1/l/i: people copy these from a screen to a phone keyboard. */
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';
const GROUP_LENGTH = 4;
/** Secret groups after the id group: 16 characters, about 79 bits. */
const SECRET_GROUPS = 4;
const GROUP = `[${ALPHABET}]{${GROUP_LENGTH}}`;
const ID_RE = new RegExp(`^${GROUP}$`);
const PASSWORD_RE = new RegExp(`^(${GROUP})(?:-${GROUP}){${SECRET_GROUPS}}$`);
/** Ids drawn at most this often before creation gives up (31^4 ids: only a full store gets there). */
const MAX_ID_DRAWS = 1000;

function randomGroup(): string {
  let group = '';
  for (let i = 0; i < GROUP_LENGTH; i++) group += ALPHABET[randomInt(ALPHABET.length)];
  return group;
}

/**
 * `iiii-ssss-ssss-ssss-ssss`: the first group is the record's id (not secret), the other four are the
 * secret. The id lets a login check the one hash it names instead of every hash of the account, so a
 * wrong password costs one scrypt whether the account has no app password or many.
 */
export function generateAppPassword(id: string = randomGroup()): string {
  if (!ID_RE.test(id)) throw new RangeError('an app password id is one group of the password alphabet');
  const groups = [id];
  for (let g = 0; g < SECRET_GROUPS; g++) groups.push(randomGroup());
  return groups.join('-');
}

/** The record id a password in the current format names, or undefined (older format, or not one). */
export function appPasswordIdOf(password: string): string | undefined {
  return PASSWORD_RE.exec(password)?.[1];
}

/**
 * True for records made in the current format, whose id is named by their password. Older records
 * (a UUID as id) can only be found by trying their hash, so they are checked one by one.
 */
export function isNamedAppPasswordId(id: string): boolean {
  return ID_RE.test(id);
}

export interface CreatedAppPassword {
  /** Shown once; never stored. */
  password: string;
  record: AppPasswordRecord;
}

export async function createAppPassword(
  store: AppPasswordStore,
  accountId: string,
  label: string,
  options: { now?: number } = {},
): Promise<CreatedAppPassword> {
  const wanted = label.trim() || 'app password';
  const taken = new Set((await store.listAppPasswords(accountId)).map((r) => r.label));
  let unique = wanted;
  for (let n = 2; taken.has(unique); n++) unique = `${wanted} (${n})`;
  const id = await unusedId(store);
  const password = generateAppPassword(id);
  const record: AppPasswordRecord = {
    id,
    accountId,
    label: unique,
    hash: await hashPassword(password),
    createdAt: options.now ?? Date.now(),
  };
  await store.addAppPassword(record);
  return { password, record };
}

/** An id no app password of any account has (ids are the store's primary key). */
async function unusedId(store: AppPasswordStore): Promise<string> {
  const taken = new Set((await store.listAppPasswords()).map((r) => r.id));
  for (let i = 0; i < MAX_ID_DRAWS; i++) {
    const id = randomGroup();
    if (!taken.has(id)) return id;
  }
  throw new Error('no free app password id left; revoke unused app passwords');
}

export function listAppPasswords(store: AppPasswordStore, accountId?: string): Promise<AppPasswordRecord[]> {
  return store.listAppPasswords(accountId);
}

/** Revokes by id or by label; false when the account has no such app password. */
export function revokeAppPassword(
  store: AppPasswordStore,
  accountId: string,
  idOrLabel: string,
): Promise<boolean> {
  return store.removeAppPassword(accountId, idOrLabel);
}

/** The default label for a password made on the welcome page. */
export function webConsentLabel(now: number = Date.now()): string {
  return `web consent ${new Date(now).toISOString().slice(0, 10)}`;
}

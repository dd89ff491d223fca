/**
 * App passwords: local passwords for mail clients, one per device, each revocable. Only a scrypt hash
 * is stored; the password is shown once. They only answer "may this client use this account?" and are
 * never part of how tokens are protected, so revoking or forgetting one never touches the grant.
 */
import { randomInt, randomUUID } from 'node:crypto';
import { hashPassword } from '../credentials/password.js';
import type { AppPasswordRecord, TokenStore } from './types.js';

/** No 0/o, 1/l/i: people copy these from a screen to a phone keyboard. */
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';
const GROUPS = 4;
const GROUP_LENGTH = 4;

/** 16 characters of a 31-letter alphabet, about 79 bits, as four dash-separated groups. */
export function generateAppPassword(): string {
  const groups: string[] = [];
  for (let g = 0; g < GROUPS; g++) {
    let group = '';
    for (let i = 0; i < GROUP_LENGTH; i++) group += ALPHABET[randomInt(ALPHABET.length)];
    groups.push(group);
  }
  return groups.join('-');
}

export interface CreatedAppPassword {
  /** Shown once; never stored. */
  password: string;
  record: AppPasswordRecord;
}

export async function createAppPassword(
  store: TokenStore,
  accountId: string,
  label: string,
  options: { now?: number } = {},
): Promise<CreatedAppPassword> {
  const wanted = label.trim() || 'app password';
  const taken = new Set(store.listAppPasswords(accountId).map((r) => r.label));
  let unique = wanted;
  for (let n = 2; taken.has(unique); n++) unique = `${wanted} (${n})`;
  const password = generateAppPassword();
  const record: AppPasswordRecord = {
    id: randomUUID(),
    accountId,
    label: unique,
    hash: await hashPassword(password),
    createdAt: options.now ?? Date.now(),
  };
  store.addAppPassword(record);
  return { password, record };
}

export function listAppPasswords(store: TokenStore, accountId?: string): AppPasswordRecord[] {
  return store.listAppPasswords(accountId);
}

/** Revokes by id or by label; false when the account has no such app password. */
export function revokeAppPassword(store: TokenStore, accountId: string, idOrLabel: string): boolean {
  return store.removeAppPassword(accountId, idOrLabel);
}

/** The default label for a password made on the welcome page. */
export function webConsentLabel(now: number = Date.now()): string {
  return `web consent ${new Date(now).toISOString().slice(0, 10)}`;
}

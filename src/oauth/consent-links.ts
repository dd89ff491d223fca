/**
 * One-off consent links: a random 32-byte token in the URL, of which only the sha256 is stored.
 * A link is bound to one account and the concrete username it was made for (so a link made for
 * alice@example.com under `*@example.com` can only ever connect alice's mailbox), expires, and is
 * spent by the first successful consent.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ResolvedAccount } from '../config/types.js';
import type { ConsentLinkRecord, ConsentStore } from '../store/types.js';

export const CONSENT_PATH = '/consent/';
export const DEFAULT_CONSENT_LINK_TTL_MS = 72 * 3600_000;
/** Links made from the admin page's "Refresh token" button are used at once. */
export const ADMIN_CONSENT_LINK_TTL_MS = 3600_000;

/** 32 random bytes in base64url: exactly 43 characters of [A-Za-z0-9_-]. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function hashConsentToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export interface CreateConsentLinkOptions {
  /** Public base URL of the HTTP listener, e.g. https://mail-proxy.example.com (no trailing path). */
  baseUrl: string;
  expiresMs?: number;
  now?: number;
}

export interface CreatedConsentLink {
  url: string;
  expiresAt: number;
}

export async function createConsentLink(
  store: ConsentStore,
  account: ResolvedAccount,
  options: CreateConsentLinkOptions,
): Promise<CreatedConsentLink> {
  const now = options.now ?? Date.now();
  const expiresMs = options.expiresMs ?? DEFAULT_CONSENT_LINK_TTL_MS;
  if (!Number.isFinite(expiresMs) || expiresMs <= 0)
    throw new RangeError('expiry must be a positive duration');
  const token = randomBytes(32).toString('base64url');
  const record: ConsentLinkRecord = {
    tokenHash: hashConsentToken(token),
    accountId: account.id,
    username: account.username,
    createdAt: now,
    expiresAt: now + expiresMs,
  };
  await store.addConsentLink(record);
  return {
    url: `${options.baseUrl.replace(/\/+$/, '')}${CONSENT_PATH}${token}`,
    expiresAt: record.expiresAt,
  };
}

export type ConsentLinkStatus =
  | { status: 'valid'; record: ConsentLinkRecord }
  | { status: 'used'; record: ConsentLinkRecord }
  | { status: 'expired'; record: ConsentLinkRecord }
  /** Well-formed but not ours (never issued, or the store was replaced). */
  | { status: 'unknown' }
  /** Not even the shape of a link token: mistyped or cut off when copied. */
  | { status: 'malformed' };

export async function checkConsentLink(
  store: ConsentStore,
  token: string,
  now: number = Date.now(),
): Promise<ConsentLinkStatus> {
  if (!TOKEN_PATTERN.test(token)) return { status: 'malformed' };
  const record = await store.getConsentLink(hashConsentToken(token));
  if (!record) return { status: 'unknown' };
  if (record.usedAt !== undefined) return { status: 'used', record };
  if (now >= record.expiresAt) return { status: 'expired', record };
  return { status: 'valid', record };
}

/** Spends the link; false when someone else spent it first (the store makes this race-free). */
export function spendConsentLink(
  store: ConsentStore,
  tokenHash: string,
  now: number = Date.now(),
): Promise<boolean> {
  return store.useConsentLink(tokenHash, now);
}

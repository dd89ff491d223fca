/**
 * What the consent pages need from the OAuth core, as one small interface: the pages orchestrate
 * (state, cookies, links, pages), the OAuth core talks to the provider and stores tokens.
 */
import { grantHasNoConsent } from '../config/accounts.js';
import type { ResolvedAccount } from '../config/types.js';

export interface AuthorizationStart {
  /** The provider's authorization URL (PKCE S256 + state already in it). */
  url: string;
  state: string;
  codeVerifier: string;
}

export interface GrantedIdentity {
  /** Who signed in at the provider (email / preferred_username), lower-cased by the OAuth core. */
  email: string;
  /** Display name when the provider gave one. */
  name?: string;
}

/** A token response whose identity is known but which is not stored yet. */
export interface PendingGrant {
  identity: GrantedIdentity;
  /** Persists the tokens for the account (called only after the identity check and the link spend). */
  save(): Promise<void>;
}

export interface DeviceStart {
  userCode: string;
  verificationUri: string;
  /** Epoch ms. */
  expiresAt: number;
  /** Polls at the server's interval until approved; rejects with a safe message when declined/expired. */
  result: Promise<PendingGrant>;
  cancel(): void;
}

export interface ConsentGrants {
  startAuthorization(account: ResolvedAccount, redirectUri: string): AuthorizationStart;
  exchangeCode(
    account: ResolvedAccount,
    params: { code: string; redirectUri: string; codeVerifier: string },
  ): Promise<PendingGrant>;
  /** True when `identity` may consent for `account` (the mailbox itself or an allowed delegate). */
  identityAllowed(account: ResolvedAccount, identity: GrantedIdentity): boolean;
  /** Absent when device code is not available at all. */
  startDevice?(account: ResolvedAccount): Promise<DeviceStart>;
}

/**
 * The device-code option is for Microsoft connections with a device endpoint: Google refuses Gmail
 * scopes on its device flow (invalid_scope), and app-only connections have no consent at all.
 */
export function deviceFlowAvailable(account: ResolvedAccount): boolean {
  const c = account.connection;
  return c.provider === 'microsoft' && !grantHasNoConsent(c) && Boolean(c.deviceCodeUrl);
}

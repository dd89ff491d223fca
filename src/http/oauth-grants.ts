/**
 * The consent pages' view of the OAuth core: authorization code with PKCE, device code, identity
 * check and storing the tokens, all done by src/oauth; this file only adapts the shapes.
 */
import type { ResolvedAccount, Settings } from '../config/types.js';
import { createAuthorizationRequest, exchangeAuthorizationCode } from '../oauth/grants/authorization-code.js';
import { pollDeviceAuthorization, startDeviceAuthorization } from '../oauth/grants/device-code.js';
import type { ConsentIdentity, TokenSet, TokenStore } from '../oauth/types.js';
import type { ConsentGrants, DeviceStart, GrantedIdentity, PendingGrant } from './grants.js';

function decodeJwtPayload(jwt: string): Record<string, unknown> | undefined {
  const part = jwt.split('.')[1];
  if (!part) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return value && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Who consented: the id_token's claims (from the token endpoint over TLS), else userinfo. */
async function identityOf(
  account: ResolvedAccount,
  set: TokenSet,
  timeoutMs: number,
): Promise<ConsentIdentity> {
  const claims: Record<string, unknown> = set.idToken ? (decodeJwtPayload(set.idToken) ?? {}) : {};
  let email = [claims.email, claims.preferred_username, claims.upn].find(
    (v) => typeof v === 'string' && v.includes('@'),
  );
  let name = typeof claims.name === 'string' ? claims.name : undefined;
  const userinfoUrl = account.connection.userinfoUrl;
  if ((email === undefined || name === undefined) && userinfoUrl) {
    const res = await fetch(userinfoUrl, {
      headers: { authorization: `Bearer ${set.accessToken}` },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (res.ok) {
      const info = (await res.json()) as Record<string, unknown>;
      if (email === undefined && typeof info.email === 'string') email = info.email;
      if (name === undefined && typeof info.name === 'string') name = info.name;
    }
  }
  if (typeof email !== 'string') throw new Error('the provider did not say who signed in');
  return { email: email.toLowerCase(), ...(name ? { name } : {}) };
}

function saveTokens(
  store: TokenStore,
  account: ResolvedAccount,
  set: TokenSet,
  identity: ConsentIdentity,
  now: number,
): void {
  store.updateToken(account.id, () => ({
    accountId: account.id,
    connection: account.connection.name,
    ...(set.refreshToken ? { refreshToken: set.refreshToken } : {}),
    accessToken: set.accessToken,
    accessTokenExpiresAt: set.expiresAt,
    scopes: set.scopes,
    identity: identity.email,
    ...(identity.name ? { displayName: identity.name } : {}),
    state: 'active',
    lastRefreshAt: now,
    updatedAt: now,
  }));
}

export function createOAuthGrants(options: {
  store: TokenStore;
  settings: Pick<Settings, 'tokenRequestTimeoutMs'>;
  now?: () => number;
}): ConsentGrants {
  const { store } = options;
  const now = options.now ?? Date.now;
  const timeoutMs = options.settings.tokenRequestTimeoutMs;

  async function pendingGrant(account: ResolvedAccount, set: TokenSet): Promise<PendingGrant> {
    const identity = await identityOf(account, set, timeoutMs);
    return { identity, save: () => saveTokens(store, account, set, identity, now()) };
  }

  return {
    startAuthorization(account, redirectUri) {
      return createAuthorizationRequest(account.connection, { redirectUri, loginHint: account.email });
    },
    async exchangeCode(account, params) {
      const set = await exchangeAuthorizationCode(account.connection, params, { timeoutMs, now });
      return pendingGrant(account, set);
    },
    identityAllowed(account, identity: GrantedIdentity) {
      const who = identity.email.toLowerCase();
      return (
        who === account.email.toLowerCase() ||
        account.connection.allowedIdentities.some((a) => a.toLowerCase() === who)
      );
    },
    async startDevice(account): Promise<DeviceStart> {
      const controller = new AbortController();
      const auth = await startDeviceAuthorization(account.connection, { timeoutMs });
      const result = pollDeviceAuthorization(account.connection, auth, {
        timeoutMs,
        signal: controller.signal,
      }).then((set) => pendingGrant(account, set));
      // The page polls our state, not this promise; keep a rejection from going unhandled.
      result.catch(() => undefined);
      return {
        userCode: auth.userCode,
        verificationUri: auth.verificationUri,
        expiresAt: auth.expiresAt,
        result,
        cancel: () => controller.abort(),
      };
    },
  };
}

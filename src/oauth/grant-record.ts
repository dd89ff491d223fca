/**
 * Writing a fresh grant after consent, shared by the consent CLI, the web consent pages and the token
 * manager, so that every path stores the same fields the same way.
 */
import type { ResolvedAccount } from '../config/types.js';
import { ProxyError } from '../errors.js';
import type { GrantStore } from '../store/types.js';
import { consentScopes, graphConsentScopes } from './grants/scopes.js';
import type { ConsentIdentity, TokenRecord, TokenSet } from './types.js';

/**
 * Stores a consented grant (state `active`), replacing any earlier one for the account, in one
 * transaction. A response without a refresh token keeps the stored one only when the same identity
 * consented again (Google omits it on re-consent without prompt=consent); with none at all nothing is
 * stored and the error says what the connection lacks.
 */
export async function storeGrant(
  store: GrantStore,
  account: ResolvedAccount,
  tokenSet: TokenSet,
  identity: ConsentIdentity,
  now: number = Date.now(),
): Promise<TokenRecord> {
  let missingRefreshToken = false;
  const stored = await store.updateToken(account.id, (current) => {
    const refreshToken =
      tokenSet.refreshToken ??
      (current?.identity?.toLowerCase() === identity.email.toLowerCase() ? current?.refreshToken : undefined);
    if (refreshToken === undefined) {
      missingRefreshToken = true;
      return undefined;
    }
    const record: TokenRecord = {
      accountId: account.id,
      connection: account.connection.name,
      refreshToken,
      accessToken: tokenSet.accessToken,
      accessTokenExpiresAt: tokenSet.expiresAt,
      // The token response names one resource's scopes; the consent also granted Graph's when asked.
      scopes: grantedScopes(account, tokenSet),
      identity: identity.email,
      state: 'active',
      lastRefreshAt: now,
      updatedAt: now,
    };
    if (identity.name !== undefined) record.displayName = identity.name;
    return record;
  });
  if (missingRefreshToken || stored === undefined) {
    const hint =
      account.connection.provider === 'microsoft'
        ? 'the scope offline_access'
        : account.connection.provider === 'google'
          ? 'access_type=offline and prompt=consent in authorizeParams'
          : 'whatever the provider needs to issue refresh tokens (offline_access, access_type=offline)';
    throw new ProxyError(
      'needs-consent',
      `The provider returned no refresh token for ${account.id}, so the proxy could not keep access; ` +
        `nothing was stored. Check that connection ${account.connection.name} asks for ${hint}, then consent again.`,
    );
  }
  return stored;
}

/**
 * A consent's scopes: those the token response named (one resource's), plus the Graph scopes when the
 * consent asked for them too. Entra's consent is for everything asked at once, so asked is granted.
 */
function grantedScopes(account: ResolvedAccount, tokenSet: TokenSet): string[] {
  const asked = new Set(consentScopes(account.connection));
  const graph = graphConsentScopes(account.connection).filter(
    (s) => asked.has(s) && !tokenSet.scopes.includes(s),
  );
  return [...tokenSet.scopes, ...graph];
}

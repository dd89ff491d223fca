/**
 * Refresh token grant. Two provider habits meet here: Google never returns a refresh token on refresh
 * (keep the old one), Microsoft returns a new one every time (the caller must persist it before using
 * the new access token). simple-oauth2 5.1 loses the old refresh token in the first case
 * (lib/access-token.js:52 reads `this.refresh_token`, which is always undefined), so it is put back
 * here; test/integration/oauth/grants.test.ts fails without that line.
 */
import type { ConnectionConfig } from '../../config/types.js';
import type { TokenSet } from '../types.js';
import { authorizationCodeClient } from './simple-oauth2-client.js';
import { classifyTokenError } from './token-errors.js';
import {
  DEFAULT_TOKEN_REQUEST_TIMEOUT_MS,
  hasClientSecret,
  postForm,
  toTokenSet,
  type RequestOptions,
} from './token-response.js';

/**
 * Microsoft's v2.0 endpoint wants the scopes again on refresh (a subset of the consented ones);
 * Google keeps the consented scopes when none are sent.
 */
function refreshScope(connection: ConnectionConfig): string[] | undefined {
  return connection.provider === 'microsoft' ? connection.scopes : undefined;
}

/**
 * `scopes`: redeem the refresh token for another resource than the mail servers (Microsoft Graph).
 * Entra refresh tokens are multi-resource: the same one, with that resource's scopes, yields a token
 * for it, as long as the user consented to them.
 */
export async function refreshAccessToken(
  connection: ConnectionConfig,
  refreshToken: string,
  options: RequestOptions & { scopes?: string[] } = {},
): Promise<TokenSet> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TOKEN_REQUEST_TIMEOUT_MS;
  const now = options.now ?? Date.now;
  const scope = options.scopes ?? refreshScope(connection);
  const requested = options.scopes ?? connection.scopes;
  let set: TokenSet;
  if (!hasClientSecret(connection)) {
    const params: Record<string, string> = { grant_type: 'refresh_token', refresh_token: refreshToken };
    if (scope) params.scope = scope.join(' ');
    set = toTokenSet(
      await postForm(connection.tokenUrl, connection, params, { timeoutMs }),
      requested,
      now(),
    );
  } else {
    try {
      const client = authorizationCodeClient(connection, timeoutMs);
      const current = client.createToken({ refresh_token: refreshToken, access_token: '', expires_in: 0 });
      const next = await current.refresh(scope ? { scope } : {});
      set = toTokenSet(next.token, requested, now());
    } catch (err) {
      throw classifyTokenError(err);
    }
  }
  // The simple-oauth2 5.1 workaround (and the Google rule for the fetch path): no new one, keep ours.
  set.refreshToken ??= refreshToken;
  return set;
}

/**
 * Client credentials (Microsoft app-only access to Exchange Online): no user, no consent, no refresh
 * token. The token manager simply asks again when the access token nears expiry.
 */
import type { ConnectionConfig } from '../../config/types.js';
import { ProxyError } from '../../errors.js';
import type { TokenSet } from '../types.js';
import { clientCredentialsClient } from './simple-oauth2-client.js';
import { classifyTokenError } from './token-errors.js';
import {
  DEFAULT_TOKEN_REQUEST_TIMEOUT_MS,
  isPublicClient,
  postForm,
  toTokenSet,
  type RequestOptions,
} from './token-response.js';

/** `scopes`: another resource's `.default` scope (Microsoft Graph) instead of the connection's. */
export async function clientCredentialsToken(
  connection: ConnectionConfig,
  options: RequestOptions & { scopes?: string[] } = {},
): Promise<TokenSet> {
  const scopes = options.scopes ?? connection.scopes;
  if (isPublicClient(connection)) {
    throw new ProxyError(
      'config',
      `Connection ${connection.name} uses client_credentials but has no clientSecret or clientCertificate; ` +
        `app-only access needs a confidential client.`,
    );
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TOKEN_REQUEST_TIMEOUT_MS;
  const now = options.now ?? Date.now;
  try {
    const raw = connection.clientCertificate
      ? await postForm(
          connection.tokenUrl,
          connection,
          { grant_type: 'client_credentials', scope: scopes.join(' ') },
          { timeoutMs, now },
        )
      : (await clientCredentialsClient(connection, timeoutMs).getToken({ scope: scopes })).token;
    const set = toTokenSet(raw, scopes, now());
    // Some servers send one anyway; an app-only grant has nothing to refresh.
    delete set.refreshToken;
    return set;
  } catch (err) {
    throw classifyTokenError(err);
  }
}

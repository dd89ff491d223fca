/**
 * Google service account with domain-wide delegation: for each mailbox the proxy signs an assertion
 * naming it as `sub` and trades it for an access token (RFC 7523 §2.1). There is no refresh token and
 * no user consent; the Workspace admin granted the client id the mail scope for the whole domain.
 */
import type { ConnectionConfig } from '../../config/types.js';
import { ProxyError } from '../../errors.js';
import type { TokenSet } from '../types.js';
import { JWT_BEARER_GRANT, signServiceAccountAssertion } from './assertions.js';
import { classifyTokenError, type TokenEndpointError } from './token-errors.js';
import {
  DEFAULT_TOKEN_REQUEST_TIMEOUT_MS,
  postTokenForm,
  toTokenSet,
  type RequestOptions,
} from './token-response.js';

export async function serviceAccountToken(
  connection: ConnectionConfig,
  mailbox: string,
  options: RequestOptions = {},
): Promise<TokenSet> {
  const now = options.now ?? Date.now;
  if (!connection.serviceAccount) {
    throw new ProxyError('config', `Connection ${connection.name} uses service_account but has no key.`);
  }
  let assertion: string;
  try {
    assertion = await signServiceAccountAssertion(connection, mailbox, Date.now());
  } catch (err) {
    throw new ProxyError('config', `Cannot sign with the service account key of ${connection.name}.`, {
      cause: err,
    });
  }
  // The assertion is the only credential: no client_id, no secret.
  const body = new URLSearchParams({ grant_type: JWT_BEARER_GRANT, assertion });
  try {
    const raw = await postTokenForm(connection.tokenUrl, body, {
      timeoutMs: options.timeoutMs ?? DEFAULT_TOKEN_REQUEST_TIMEOUT_MS,
    });
    const set = toTokenSet(raw, connection.scopes, now());
    delete set.refreshToken;
    return set;
  } catch (err) {
    throw classifyTokenError(err);
  }
}

/**
 * What the admin must do about a permanent refusal, in words: Google's codes are terse and the same
 * `invalid_grant` means an unknown user, a suspended one, or a deleted key.
 */
export function serviceAccountAdvice(
  connection: ConnectionConfig,
  mailbox: string,
  failure: TokenEndpointError,
): string {
  const clientId = connection.clientId;
  const scope = connection.scopes.join(',');
  const description = (failure.description ?? '').toLowerCase();
  const key = connection.serviceAccount;
  const keyName = key?.privateKeyId
    ? `key ${key.privateKeyId} of ${key.clientEmail}`
    : `the key of ${key?.clientEmail ?? 'the service account'}`;
  if (failure.oauthError === 'unauthorized_client') {
    return (
      `domain-wide delegation is not granted for client id ${clientId} and scope ${scope}: in the Google ` +
      `Admin console open Security → Access and data control → API controls → Manage Domain Wide ` +
      `Delegation and add client id ${clientId} with scope ${scope}`
    );
  }
  if (
    /signature|key|not found|deleted|disabled/.test(description) ||
    failure.oauthError === 'invalid_client'
  ) {
    return (
      `Google refused ${keyName} (${failure.summary}): the key or the service account was deleted or ` +
      `disabled; create a new key and point serviceAccountKeyFile of connection ${connection.name} at it`
    );
  }
  if (failure.oauthError === 'invalid_grant') {
    return (
      `Google does not accept ${mailbox} (${failure.summary}): the user is unknown, suspended or not in ` +
      `the Workspace domain of the service account`
    );
  }
  return `Google refused the service account of connection ${connection.name} (${failure.summary})`;
}

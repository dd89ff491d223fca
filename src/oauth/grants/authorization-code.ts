/**
 * Authorization code grant with PKCE (RFC 7636, S256) and `state`, for the consent CLI and the web
 * consent pages. Confidential clients go through simple-oauth2; public clients through a plain form
 * POST, because simple-oauth2 always sends an (empty) client_secret.
 */
import { createHash, randomBytes } from 'node:crypto';
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
import { consentScopes } from './scopes.js';

export interface AuthorizationRequest {
  /** Send the user here. */
  url: string;
  /** Compare with the `state` of the redirect before exchanging the code. */
  state: string;
  /** Keep server-side (or in this process) until the code comes back; never put it in a URL. */
  codeVerifier: string;
}

/** RFC 7636 §4.1: 32 random bytes give a 43-character verifier. */
export function createCodeVerifier(): string {
  return randomBytes(32).toString('base64url');
}

export function codeChallengeS256(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

export function createAuthorizationRequest(
  connection: ConnectionConfig,
  options: { redirectUri: string; loginHint?: string; state?: string },
): AuthorizationRequest {
  const state = options.state ?? randomBytes(24).toString('base64url');
  const codeVerifier = createCodeVerifier();
  // Query parameters written into the configured authorize URL survive (simple-oauth2 would append a
  // second `?`); the connection's authorizeParams (Google: access_type=offline, prompt=consent) and
  // then ours win over them.
  const fromUrl = Object.fromEntries(new URL(connection.authorizeUrl).searchParams);
  const params: Record<string, string | string[]> = {
    ...fromUrl,
    ...connection.authorizeParams,
    redirect_uri: options.redirectUri,
    scope: consentScopes(connection),
    state,
    code_challenge: codeChallengeS256(codeVerifier),
    code_challenge_method: 'S256',
  };
  if (options.loginHint) params.login_hint = options.loginHint;
  const client = authorizationCodeClient(connection, DEFAULT_TOKEN_REQUEST_TIMEOUT_MS);
  // The @types have no index signature for extra params; simple-oauth2 copies them all verbatim.
  const url = client.authorizeURL(params as Parameters<typeof client.authorizeURL>[0]);
  return { url, state, codeVerifier };
}

export async function exchangeAuthorizationCode(
  connection: ConnectionConfig,
  grant: { code: string; redirectUri: string; codeVerifier: string },
  options: RequestOptions = {},
): Promise<TokenSet> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TOKEN_REQUEST_TIMEOUT_MS;
  const now = options.now ?? Date.now;
  const params = { code: grant.code, redirect_uri: grant.redirectUri, code_verifier: grant.codeVerifier };
  if (!hasClientSecret(connection)) {
    const raw = await postForm(
      connection.tokenUrl,
      connection,
      { grant_type: 'authorization_code', ...params },
      { timeoutMs },
    );
    return toTokenSet(raw, connection.scopes, now());
  }
  try {
    const client = authorizationCodeClient(connection, timeoutMs);
    // The @types lack code_verifier; simple-oauth2 posts every param through.
    const token = await client.getToken(params as Parameters<typeof client.getToken>[0]);
    return toTokenSet(token.token, connection.scopes, now());
  } catch (err) {
    throw classifyTokenError(err);
  }
}

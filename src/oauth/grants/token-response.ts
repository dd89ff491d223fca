/**
 * Token endpoint plumbing shared by the grants: turning a raw response into a TokenSet, and a small
 * fetch-based form POST for the requests simple-oauth2 cannot make: public clients (it always sends
 * `client_secret=`, which Microsoft refuses from public clients, AADSTS700025) and the device grant
 * (RFC 8628, which it does not have).
 */
import type { ConnectionConfig } from '../../config/types.js';
import type { TokenSet } from '../types.js';
import { CLIENT_ASSERTION_TYPE, signClientAssertion } from './assertions.js';
import { classifyResponse, classifyTokenError, TokenEndpointError } from './token-errors.js';

/** Used when a request gives no timeout (the token manager passes settings.tokenRequestTimeoutMs). */
export const DEFAULT_TOKEN_REQUEST_TIMEOUT_MS = 30_000;
/** When a response has no expires_in: RFC 6749 leaves it open; every mail provider uses one hour. */
const DEFAULT_EXPIRES_IN_S = 3600;
const MAX_RESPONSE_BYTES = 256 * 1024;

export interface RequestOptions {
  timeoutMs?: number;
  /** Injectable clock (epoch ms) for expiry arithmetic. */
  now?: () => number;
}

export function toTokenSet(raw: Record<string, unknown>, requestedScopes: string[], now: number): TokenSet {
  const accessToken = raw.access_token;
  if (typeof accessToken !== 'string' || accessToken === '') {
    throw new TokenEndpointError('token endpoint answered without an access_token', { kind: 'transient' });
  }
  const expiresIn = Number(raw.expires_in ?? DEFAULT_EXPIRES_IN_S);
  const set: TokenSet = {
    accessToken,
    expiresAt: now + (Number.isFinite(expiresIn) && expiresIn >= 0 ? expiresIn : DEFAULT_EXPIRES_IN_S) * 1000,
    scopes:
      typeof raw.scope === 'string' && raw.scope.trim() !== ''
        ? raw.scope.trim().split(/\s+/)
        : requestedScopes,
  };
  if (typeof raw.refresh_token === 'string' && raw.refresh_token !== '') set.refreshToken = raw.refresh_token;
  if (typeof raw.id_token === 'string' && raw.id_token !== '') set.idToken = raw.id_token;
  return set;
}

/**
 * POSTs a form to a token-like endpoint and returns the JSON body, or throws a classified
 * TokenEndpointError. Client authentication goes in the body (client_secret_post), and
 * `client_secret` is only sent when the connection has one; a connection with a certificate sends a
 * signed client assertion to its token endpoint instead (private_key_jwt).
 */
export async function postForm(
  url: string,
  connection: ConnectionConfig,
  params: Record<string, string>,
  options: RequestOptions = {},
): Promise<Record<string, unknown>> {
  const body = new URLSearchParams({ ...params, client_id: connection.clientId });
  if (connection.clientSecret !== undefined && connection.clientSecret !== '') {
    body.set('client_secret', connection.clientSecret);
  } else if (connection.clientCertificate && url === connection.tokenUrl) {
    // Signed per request: each assertion has its own jti and lives only minutes.
    body.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
    body.set('client_assertion', await signClientAssertion(connection, (options.now ?? Date.now)()));
  }
  return postTokenForm(url, body, options);
}

/** POSTs an already complete form (client authentication included, or none) and parses the answer. */
export async function postTokenForm(
  url: string,
  body: URLSearchParams,
  options: RequestOptions = {},
): Promise<Record<string, unknown>> {
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body,
      redirect: 'error',
      signal: AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TOKEN_REQUEST_TIMEOUT_MS),
    });
    text = await res.text();
  } catch (err) {
    throw classifyTokenError(err);
  }
  if (text.length > MAX_RESPONSE_BYTES) {
    throw new TokenEndpointError(`token endpoint answered HTTP ${res.status} with an oversized body`, {
      kind: 'transient',
      status: res.status,
    });
  }
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!res.ok) throw classifyResponse(res.status, json, res.headers);
  if (json === null || typeof json !== 'object') {
    throw new TokenEndpointError(`token endpoint answered HTTP ${res.status} without JSON`, {
      kind: 'transient',
      status: res.status,
    });
  }
  return json as Record<string, unknown>;
}

/** Neither a secret nor a certificate: nothing authenticates the client. */
export function isPublicClient(connection: ConnectionConfig): boolean {
  return !hasClientSecret(connection) && connection.clientCertificate === undefined;
}

/** simple-oauth2 is used only with a secret; every other client goes through postForm. */
export function hasClientSecret(connection: ConnectionConfig): boolean {
  return connection.clientSecret !== undefined && connection.clientSecret !== '';
}

/**
 * simple-oauth2 configuration for a confidential client. Client authentication goes in the body
 * (client_secret_post): both Google and Microsoft accept it, and it avoids the Basic-header
 * URL-encoding differences of secrets with special characters.
 */
import { AuthorizationCode, ClientCredentials, type ModuleOptions } from 'simple-oauth2';
import type { ConnectionConfig } from '../../config/types.js';

function options(connection: ConnectionConfig, timeoutMs: number, withAuthorize: boolean): ModuleOptions {
  const token = new URL(connection.tokenUrl);
  const auth: ModuleOptions['auth'] = { tokenHost: token.origin, tokenPath: token.pathname + token.search };
  if (withAuthorize) {
    // ClientCredentials' schema refuses authorize* keys.
    const authorize = new URL(connection.authorizeUrl);
    auth.authorizeHost = authorize.origin;
    auth.authorizePath = authorize.pathname;
  }
  return {
    client: { id: connection.clientId, secret: connection.clientSecret ?? '' },
    auth,
    // Wreck: a request that takes longer fails with a Boom 504 "Client request timeout" (transient).
    http: { timeout: timeoutMs, redirects: false },
    options: { authorizationMethod: 'body', bodyFormat: 'form' },
  };
}

export function authorizationCodeClient(connection: ConnectionConfig, timeoutMs: number): AuthorizationCode {
  return new AuthorizationCode(options(connection, timeoutMs, true));
}

export function clientCredentialsClient(connection: ConnectionConfig, timeoutMs: number): ClientCredentials {
  return new ClientCredentials(options(connection, timeoutMs, false));
}

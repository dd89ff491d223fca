/**
 * Which scopes a connection asks for, per purpose. A connection that sends through Microsoft Graph
 * holds a grant for two resources: the mail servers (IMAP/POP/SMTP) and Graph. The user consents to
 * both at once, but a token request names one resource only (Entra refuses to mix them), so the
 * refresh token is redeemed separately for each.
 */
import type { ConnectionConfig } from '../../config/types.js';

/** Grants whose tokens come from a user's consent (so consent asks for Graph too). */
function delegated(connection: ConnectionConfig): boolean {
  return connection.grant === 'authorization_code' || connection.grant === 'device_code';
}

/** The scopes of the authorization (or device) request: the mail scopes, plus Graph's when it sends. */
export function consentScopes(connection: ConnectionConfig): string[] {
  if (!connection.graph || !delegated(connection)) return connection.scopes;
  return unique([...connection.scopes, ...connection.graph.scopes]);
}

/**
 * The scopes of a Graph token request. A delegated Microsoft request keeps `offline_access`, so the
 * token endpoint keeps issuing (rotated) refresh tokens when Graph is what it redeems.
 */
export function graphTokenScopes(connection: ConnectionConfig): string[] {
  const graph = connection.graph?.scopes ?? [];
  if (connection.provider === 'microsoft' && delegated(connection) && !graph.includes('offline_access'))
    return [...graph, 'offline_access'];
  return graph;
}

/** The Graph scopes a stored grant must hold (those a consent grants, not `offline_access`). */
export function graphConsentScopes(connection: ConnectionConfig): string[] {
  return (connection.graph?.scopes ?? []).filter((s) => s !== 'offline_access');
}

/**
 * Whether a stored grant was consented with the Graph scopes. Grants consented before the connection
 * sent through Graph lack them, and their owner must consent again.
 */
export function hasGraphConsent(connection: ConnectionConfig, scopes: readonly string[]): boolean {
  const held = new Set(scopes.map((s) => s.toLowerCase()));
  return graphConsentScopes(connection).every((s) => held.has(s.toLowerCase()));
}

/**
 * The scopes a grant holds after a mail refresh: what the mail token endpoint answered, plus the Graph
 * scopes the grant already held (a mail refresh names only the mail resource, so its answer cannot
 * speak for Graph).
 */
export function scopesAfterRefresh(
  connection: ConnectionConfig,
  before: readonly string[],
  answered: readonly string[],
  resource: 'mail' | 'graph',
): string[] {
  if (resource === 'graph') return unique([...before, ...answered]);
  const graph = new Set(graphConsentScopes(connection).map((s) => s.toLowerCase()));
  return unique([...answered, ...before.filter((s) => graph.has(s.toLowerCase()))]);
}

function unique(scopes: string[]): string[] {
  const seen = new Set<string>();
  return scopes.filter((s) => {
    const key = s.toLowerCase();
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

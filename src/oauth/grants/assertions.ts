/**
 * The two signed JWTs of RFC 7523, made with jose (no hand-rolled JWS):
 * - a client assertion (§2.2) that authenticates a client with a certificate instead of a secret, in
 *   the shape Entra documents: iss = sub = client id, aud = the token endpoint, a short lifetime, a
 *   fresh jti each time, and the certificate's SHA-256 thumbprint in the `x5t#S256` header;
 * - a Google service account's authorization grant (§2.1): iss = the service account, sub = the
 *   mailbox it acts for (domain-wide delegation), aud = the token endpoint, scope, at most one hour.
 */
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { ConnectionConfig } from '../../config/types.js';
import { ProxyError } from '../../errors.js';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** An assertion is used once, right away; a short life limits what a copy of it is worth. */
export const CLIENT_ASSERTION_LIFETIME_S = 300;
/** Google's ceiling for a service account assertion. */
export const SERVICE_ACCOUNT_ASSERTION_LIFETIME_S = 3600;

export async function signClientAssertion(connection: ConnectionConfig, nowMs: number): Promise<string> {
  const cert = connection.clientCertificate;
  if (!cert) {
    throw new ProxyError('config', `Connection ${connection.name} has no clientCertificate to sign with.`);
  }
  const iat = Math.floor(nowMs / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: cert.algorithm, typ: 'JWT', 'x5t#S256': cert.thumbprintS256 })
    .setIssuer(connection.clientId)
    .setSubject(connection.clientId)
    .setAudience(connection.tokenUrl)
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(iat + CLIENT_ASSERTION_LIFETIME_S)
    .setJti(randomUUID())
    .sign(cert.privateKey);
}

export async function signServiceAccountAssertion(
  connection: ConnectionConfig,
  mailbox: string,
  nowMs: number,
): Promise<string> {
  const key = connection.serviceAccount;
  if (!key) {
    throw new ProxyError('config', `Connection ${connection.name} has no service account key to sign with.`);
  }
  const iat = Math.floor(nowMs / 1000);
  const header: { alg: 'RS256'; typ: 'JWT'; kid?: string } = { alg: 'RS256', typ: 'JWT' };
  if (key.privateKeyId !== undefined) header.kid = key.privateKeyId;
  return new SignJWT({ scope: connection.scopes.join(' ') })
    .setProtectedHeader(header)
    .setIssuer(key.clientEmail)
    .setSubject(mailbox)
    .setAudience(connection.tokenUrl)
    .setIssuedAt(iat)
    .setExpirationTime(iat + SERVICE_ACCOUNT_ASSERTION_LIFETIME_S)
    .setJti(randomUUID())
    .sign(key.privateKey);
}

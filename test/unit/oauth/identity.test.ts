import { describe, expect, it } from 'vitest';
import type { ConnectionConfig } from '../../../src/config/types.js';
import { identityFromTokenSet } from '../../../src/oauth/grants/identity.js';
import type { TokenSet } from '../../../src/oauth/types.js';

const TENANT = '0b8c9e3a-1111-4222-8333-944445555666';

function connection(overrides: Partial<ConnectionConfig> = {}): ConnectionConfig {
  return {
    name: 'contoso',
    provider: 'microsoft',
    clientId: 'app',
    grant: 'authorization_code',
    authorizeUrl: 'https://login.example/authorize',
    tokenUrl: 'https://login.example/token',
    scopes: ['openid'],
    authorizeParams: {},
    sasl: 'xoauth2',
    allowedIdentities: [],
    ...overrides,
  };
}

function tokens(claims: Record<string, unknown>): TokenSet {
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  return {
    accessToken: 'at',
    expiresAt: Date.now() + 3_600_000,
    scopes: ['openid'],
    idToken: `${b64({ alg: 'none' })}.${b64(claims)}.`,
  };
}

describe('who consented (id_token claims)', () => {
  it('Microsoft: the unverified email claim is never taken as the identity', async () => {
    // An attacker can set `email` on an account of their own tenant to the victim's address.
    const set = tokens({ email: 'victim@contoso.com', tid: TENANT });
    await expect(identityFromTokenSet(connection(), set)).rejects.toThrow(/preferred_username\/upn claim/);
    const upn = tokens({
      email: 'victim@contoso.com',
      preferred_username: 'mallory@evil.example',
      tid: TENANT,
    });
    expect((await identityFromTokenSet(connection(), upn)).email).toBe('mallory@evil.example');
  });

  it('Google keeps using its verified email claim', async () => {
    const set = tokens({ email: 'alice@gmail.com', email_verified: true });
    expect((await identityFromTokenSet(connection({ provider: 'google' }), set)).email).toBe(
      'alice@gmail.com',
    );
  });

  it('a Microsoft connection bound to a tenant GUID refuses a sign-in from another tenant', async () => {
    const bound = connection({ tenantId: TENANT.toUpperCase() });
    const ours = tokens({ preferred_username: 'alice@contoso.com', tid: TENANT });
    expect((await identityFromTokenSet(bound, ours)).email).toBe('alice@contoso.com');
    const theirs = tokens({
      preferred_username: 'alice@contoso.com',
      tid: '99999999-2222-3333-4444-555555555555',
    });
    await expect(identityFromTokenSet(bound, theirs)).rejects.toMatchObject({
      code: 'needs-consent',
      message: expect.stringMatching(/came from tenant 9999.*is for tenant/),
    });
    const none = tokens({ preferred_username: 'alice@contoso.com' });
    await expect(identityFromTokenSet(bound, none)).rejects.toThrow(/no tenant id/);
    // A tenant given by domain (or common) has no GUID to compare: the sign-in name decides.
    const byDomain = connection({ tenantId: 'contoso.onmicrosoft.com' });
    expect((await identityFromTokenSet(byDomain, theirs)).email).toBe('alice@contoso.com');
  });
});

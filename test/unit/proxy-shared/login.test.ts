import { describe, expect, it } from 'vitest';
import type { ConnectionConfig, ResolvedAccount } from '../../../src/config/types.js';
import type { Authenticator } from '../../../src/credentials/types.js';
import { ProxyError } from '../../../src/errors.js';
import type { TokenProvider } from '../../../src/oauth/types.js';
import {
  performLogin,
  type UpstreamAuthOutcome,
  type UpstreamLogin,
} from '../../../src/proxy/shared/login.js';
import { Secret } from '../../../src/proxy/shared/secret.js';

const connection = { name: 'c', provider: 'custom', sasl: 'xoauth2' } as unknown as ConnectionConfig;
const account: ResolvedAccount = {
  id: 'joe@example.com',
  username: 'joe',
  email: 'joe@example.com',
  connection,
  entry: 'joe',
};

function setup(opts: {
  verify?: () => Promise<ResolvedAccount>;
  tokens?: (force: boolean) => Promise<string>;
  connect?: () => Promise<string>;
  auth?: UpstreamAuthOutcome[];
}) {
  const calls: string[] = [];
  const authenticator: Authenticator = {
    verify: opts.verify ?? (() => Promise.resolve(account)),
  };
  let n = 0;
  const tokens: TokenProvider = {
    async getAccessToken(_a, o) {
      const force = o?.forceRefresh === true;
      calls.push(force ? 'token:force' : 'token');
      const token = opts.tokens ? await opts.tokens(force) : `tok${++n}`;
      return { token, expiresAt: Date.now() + 3600_000 };
    },
    invalidate: () => undefined,
  };
  const outcomes = [...(opts.auth ?? [{ ok: true }])];
  let c = 0;
  const protocol: UpstreamLogin<string> = {
    async connect() {
      calls.push('connect');
      return opts.connect ? opts.connect() : `conn${++c}`;
    },
    async authenticate(upstream, _a, token) {
      calls.push(`auth:${upstream}:${token}`);
      const next = outcomes.shift();
      if (!next) throw new Error('unexpected auth');
      return next;
    },
    close(upstream) {
      calls.push(`close:${upstream}`);
    },
  };
  const run = () =>
    performLogin(
      { authenticator, tokens },
      { username: 'joe', password: new Secret('pw'), remoteAddress: '127.0.0.1' },
      protocol,
    );
  return { calls, run };
}

describe('performLogin', () => {
  it('logs in with the cached token on the first try', async () => {
    const { calls, run } = setup({});
    const result = await run();
    expect(result).toMatchObject({ ok: true, upstream: 'conn1', refreshed: false, account });
    expect(calls.sort()).toEqual(['auth:conn1:tok1', 'connect', 'token'].sort());
  });

  it('forces exactly one refresh after a rejected token and retries on the same connection', async () => {
    const { calls, run } = setup({
      auth: [{ ok: false, reason: 'Invalid credentials', reusable: true }, { ok: true }],
    });
    const result = await run();
    expect(result).toMatchObject({ ok: true, refreshed: true });
    expect(calls.filter((c) => c.startsWith('token'))).toEqual(['token', 'token:force']);
    expect(calls.filter((c) => c.startsWith('auth'))).toEqual(['auth:conn1:tok1', 'auth:conn1:tok2']);
  });

  it('reconnects for the retry when the upstream dropped the connection', async () => {
    const { calls, run } = setup({ auth: [{ ok: false, reason: 'no', reusable: false }, { ok: true }] });
    const result = await run();
    expect(result).toMatchObject({ ok: true, upstream: 'conn2' });
    expect(calls).toContain('close:conn1');
  });

  it('gives up after the second rejection with upstream-rejected carrying the upstream text', async () => {
    const { calls, run } = setup({
      auth: [
        { ok: false, reason: 'first', reusable: true },
        { ok: false, reason: '[AUTHENTICATIONFAILED] Invalid credentials (Failure)', reusable: true },
      ],
    });
    const result = await run();
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.code).toBe('upstream-rejected');
    expect(result.error.detail).toBe('[AUTHENTICATIONFAILED] Invalid credentials (Failure)');
    expect(calls.filter((c) => c.startsWith('auth'))).toHaveLength(2);
    expect(calls).toContain('close:conn1');
  });

  it.each([
    [
      'bad-credentials from the authenticator',
      { verify: () => Promise.reject(new ProxyError('bad-credentials', 'x')) },
      'bad-credentials',
      false,
    ],
    [
      'a non-ProxyError from the authenticator',
      { verify: () => Promise.reject(new Error('db')) },
      'bad-credentials',
      false,
    ],
    [
      'needs-consent from the tokens',
      { tokens: () => Promise.reject(new ProxyError('needs-consent', 'x')) },
      'needs-consent',
      true,
    ],
    [
      'token endpoint down',
      { tokens: () => Promise.reject(new ProxyError('token-unavailable', 'x')) },
      'token-unavailable',
      true,
    ],
    [
      'a plain error from the tokens',
      { tokens: () => Promise.reject(new Error('boom')) },
      'token-unavailable',
      true,
    ],
    [
      'upstream down',
      { connect: () => Promise.reject(new ProxyError('upstream-unavailable', 'x')) },
      'upstream-unavailable',
      true,
    ],
    [
      'a plain connect error',
      { connect: () => Promise.reject(new Error('ECONNREFUSED')) },
      'upstream-unavailable',
      true,
    ],
  ] as const)('maps %s', async (_name, opts, code, knowsAccount) => {
    const { run } = setup(opts);
    const result = await run();
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.code).toBe(code);
    expect(result.account !== undefined).toBe(knowsAccount);
  });

  it('does not connect upstream when the local credentials are wrong', async () => {
    const { calls, run } = setup({ verify: () => Promise.reject(new ProxyError('bad-credentials', 'x')) });
    await run();
    expect(calls).toEqual([]);
  });

  it('closes the parallel upstream connection when the token fails', async () => {
    const { calls, run } = setup({ tokens: () => Promise.reject(new ProxyError('needs-consent', 'x')) });
    await run();
    expect(calls).toContain('close:conn1');
  });

  it('maps a forced refresh that fails to its own code (revoked between the two tries)', async () => {
    const { run } = setup({
      tokens: (force) =>
        force ? Promise.reject(new ProxyError('needs-consent', 'revoked')) : Promise.resolve('t'),
      auth: [{ ok: false, reason: 'no', reusable: true }],
    });
    const result = await run();
    expect(result).toMatchObject({ ok: false, error: { code: 'needs-consent' } });
  });

  it('maps a broken dialogue during authenticate to upstream-unavailable', async () => {
    const { run } = setup({ auth: [] });
    const result = await run();
    expect(result).toMatchObject({ ok: false, error: { code: 'upstream-unavailable' } });
  });
});

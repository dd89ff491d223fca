import { describe, expect, it } from 'vitest';
import type { ConnectionConfig, ResolvedAccount } from '../../../src/config/types.js';
import { ProxyError } from '../../../src/errors.js';
import { performLogin, type UpstreamLogin } from '../../../src/proxy/shared/login.js';
import { Secret } from '../../../src/proxy/shared/secret.js';
import type { LoginMetricResult, SessionRecord } from '../../../src/proxy/shared/types.js';

const account: ResolvedAccount = {
  id: 'joe@example.com',
  username: 'joe',
  email: 'joe@example.com',
  connection: { name: 'c', provider: 'custom', sasl: 'xoauth2' } as unknown as ConnectionConfig,
  entry: 'joe',
};

const upstream: UpstreamLogin<string> = {
  connect: () => Promise.resolve('conn'),
  authenticate: () => Promise.resolve({ ok: true }),
  close: () => undefined,
};

type Observed = { protocol: SessionRecord['protocol']; result: LoginMetricResult; seconds: number };

function deps(verify: () => Promise<ResolvedAccount>, observed: Observed[], throws = false) {
  return {
    authenticator: { verify },
    tokens: {
      getAccessToken: () => Promise.resolve({ token: 't', expiresAt: Date.now() + 3_600_000 }),
      invalidate: () => undefined,
    },
    metrics: {
      loginFinished(protocol: SessionRecord['protocol'], result: LoginMetricResult, seconds: number) {
        if (throws) throw new Error('metrics broke');
        observed.push({ protocol, result, seconds });
      },
    },
  };
}

const request = (protocol?: SessionRecord['protocol']) => ({
  username: 'joe',
  password: new Secret('pw'),
  remoteAddress: '127.0.0.1',
  ...(protocol ? { protocol } : {}),
});

describe('performLogin timing', () => {
  it('reports ok with the protocol and a duration', async () => {
    const observed: Observed[] = [];
    const slow = () => new Promise<ResolvedAccount>((r) => setTimeout(() => r(account), 30));
    const result = await performLogin(deps(slow, observed), request('smtp'), upstream);
    expect(result.ok).toBe(true);
    expect(observed).toHaveLength(1);
    expect(observed[0]).toMatchObject({ protocol: 'smtp', result: 'ok' });
    expect(observed[0]!.seconds).toBeGreaterThanOrEqual(0.02);
    expect(observed[0]!.seconds).toBeLessThan(10);
  });

  it('reports a failure by its ProxyError code', async () => {
    const observed: Observed[] = [];
    const refuse = () => Promise.reject(new ProxyError('bad-credentials', 'no'));
    const result = await performLogin(deps(refuse, observed), request('imap'), upstream);
    expect(result.ok).toBe(false);
    expect(observed.map((o) => o.result)).toEqual(['bad-credentials']);
  });

  it('without a protocol nothing is reported; a throwing metric does not fail the login', async () => {
    const observed: Observed[] = [];
    const ok = () => Promise.resolve(account);
    await performLogin(deps(ok, observed), request(), upstream);
    expect(observed).toEqual([]);
    const result = await performLogin(deps(ok, observed, true), request('pop3'), upstream);
    expect(result.ok).toBe(true);
  });
});

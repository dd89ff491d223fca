/** `withLocalSenders`: per account, a local sender or the relay login, and never a mix-up of the two. */
import { describe, expect, it } from 'vitest';
import type { ResolvedAccount } from '../../../src/config/types.js';
import type { UpstreamLogin } from '../../../src/proxy/shared/login.js';
import type { LocalUpstream } from '../../../src/proxy/shared/session.js';
import { withLocalSenders } from '../../../src/proxy/smtp/server.js';
import type { SmtpUpstream } from '../../../src/proxy/smtp/upstream.js';

const account = (email: string): ResolvedAccount => ({ email }) as unknown as ResolvedAccount;
const local: LocalUpstream = { sender: { send: () => Promise.resolve({ kind: 'sent' }) }, label: 'graph' };
const relayed = { conn: {}, server: {}, extensions: [] } as unknown as SmtpUpstream;

function recordingRelay(): { login: UpstreamLogin<SmtpUpstream>; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    login: {
      connect: (a) => {
        calls.push(`connect ${a.email}`);
        return Promise.resolve(relayed);
      },
      authenticate: (_u, a, token) => {
        calls.push(`authenticate ${a.email} ${token}`);
        return Promise.resolve({ ok: false, reason: '535 no', reusable: true });
      },
      close: () => {
        calls.push('close');
      },
    },
  };
}

describe('withLocalSenders', () => {
  const pick = (a: ResolvedAccount): LocalUpstream | undefined =>
    a.email === 'graph@x.y' ? local : undefined;
  const signal = new AbortController().signal;

  it('an account the pick names gets the local sender; the relay is never touched', async () => {
    const relay = recordingRelay();
    const login = withLocalSenders(relay.login, pick);
    const upstream = await login.connect(account('graph@x.y'), signal);
    expect(upstream).toBe(local);
    expect(await login.authenticate(upstream, account('graph@x.y'), 'tok')).toEqual({ ok: true });
    login.close(upstream);
    expect(relay.calls).toEqual([]);
  });

  it('every other account goes through the relay login, its refusals included', async () => {
    const relay = recordingRelay();
    const login = withLocalSenders(relay.login, async (a) => Promise.resolve(pick(a)));
    const upstream = await login.connect(account('smtp@x.y'), signal);
    expect(upstream).toBe(relayed);
    expect(await login.authenticate(upstream, account('smtp@x.y'), 'tok')).toEqual({
      ok: false,
      reason: '535 no',
      reusable: true,
    });
    login.close(upstream);
    expect(relay.calls).toEqual(['connect smtp@x.y', 'authenticate smtp@x.y tok', 'close']);
  });
});

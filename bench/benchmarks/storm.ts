/**
 * (4) Login storm: C clients over A accounts log in at the same moment. Through the proxy every
 * stored access token has expired (fresh accounts per run), so the token manager must refresh each
 * account exactly once while the other logins of that account wait for it. Runs:
 * - proxy, warm credential cache, expired tokens (the target case);
 * - proxy, cold credential cache, expired tokens (every login verifies its scrypt hash);
 * - proxy, warm credentials and tokens (the pure login rate);
 * direct and bare relay log in with valid tokens (the upstream's own limit).
 */
import { performance } from 'node:perf_hooks';
import { Conn, imapLogin, type Credentials, type Mode } from '../lib/client.js';
import type { Env } from '../lib/env.js';
import { runPool, sleep } from '../lib/pool.js';
import type { Row } from '../lib/report.js';

export interface StormOptions {
  clients: number;
}

interface Counts {
  auth: { token: number; refresh: number };
}

interface StormRun {
  seconds: number;
  ok: number;
  failed: number;
  errors: string[];
  tokenRequests: number;
}

async function storm(env: Env, mode: Mode, accounts: Credentials[], clients: number): Promise<StormRun> {
  const before = await env.upstream.call<Counts>('stats');
  const t0 = performance.now();
  const run = await runPool(clients, clients, async (i) => {
    const conn = await Conn.open(env.imap[mode], env.ca, 60_000);
    try {
      await imapLogin(conn, mode, accounts[i % accounts.length]!, 60_000);
      return conn;
    } catch (err) {
      conn.close();
      throw err;
    }
  });
  const seconds = (performance.now() - t0) / 1000;
  for (const c of run.ok) c.close();
  const after = await env.upstream.call<Counts>('stats');
  await sleep(500);
  return {
    seconds,
    ok: run.ok.length,
    failed: run.errors.length,
    errors: [...new Set(run.errors)].slice(0, 5),
    tokenRequests: after.auth.token - before.auth.token,
  };
}

export async function runStorm(env: Env, o: StormOptions): Promise<{ rows: Row[]; raw: unknown }> {
  const warmSet = env.storm.a!;
  const coldSet = env.storm.b!;
  const accounts = warmSet.length;
  await env.proxy.call('warmCredentials', {
    usernames: warmSet.map((c) => c.username),
    password: warmSet[0]!.password,
  });
  const direct = await storm(env, 'direct', env.warm, o.clients);
  const bare = await storm(env, 'bare', env.warm, o.clients);
  const expired = await storm(env, 'proxy', warmSet, o.clients);
  const warmAll = await storm(env, 'proxy', warmSet, o.clients);
  await env.proxy.call('clearCredentialCache');
  const cold = await storm(env, 'proxy', coldSet, o.clients);
  const rate = (r: StormRun): number => r.ok / r.seconds;
  const title = `${o.clients} clients / ${accounts} accounts`;
  return {
    rows: [
      {
        benchmark: 'login storm',
        metric: `logins/s, tokens expired (${title})`,
        unit: '1/s',
        direct: rate(direct),
        bare: rate(bare),
        proxy: rate(expired),
        ratio: rate(expired) / rate(bare),
        target: 'upstream-bound',
      },
      {
        benchmark: 'login storm',
        metric: 'token requests, tokens expired',
        unit: 'count',
        proxy: expired.tokenRequests,
        target: `= ${accounts}`,
        pass: expired.tokenRequests === accounts,
      },
      {
        benchmark: 'login storm',
        metric: 'logins/s, cold credential cache',
        unit: '1/s',
        direct: rate(direct),
        bare: rate(bare),
        proxy: rate(cold),
        ratio: rate(cold) / rate(bare),
      },
      {
        benchmark: 'login storm',
        metric: 'token requests, cold credential cache',
        unit: 'count',
        proxy: cold.tokenRequests,
        target: `= ${accounts}`,
        pass: cold.tokenRequests === accounts,
      },
      {
        benchmark: 'login storm',
        metric: 'logins/s, tokens and credentials warm',
        unit: '1/s',
        direct: rate(direct),
        bare: rate(bare),
        proxy: rate(warmAll),
        ratio: rate(warmAll) / rate(bare),
      },
      {
        benchmark: 'login storm',
        metric: 'failed logins (all runs)',
        unit: 'count',
        direct: direct.failed,
        bare: bare.failed,
        proxy: expired.failed + cold.failed + warmAll.failed,
        target: '0',
        pass: direct.failed + bare.failed + expired.failed + cold.failed + warmAll.failed === 0,
      },
    ],
    raw: { clients: o.clients, accounts, direct, bare, expired, cold, warmAll },
  };
}

/**
 * (4) Login storm: C clients over A accounts log in at the same moment. Through the proxy every
 * stored access token has expired (fresh accounts per run), so the token manager must refresh each
 * account exactly once while the other logins of that account wait for it. Runs:
 * - proxy, warm credential cache, expired tokens (the target case);
 * - proxy, cold credential cache, expired tokens (every login verifies its scrypt hash);
 * - proxy, warm credentials and tokens (the pure login rate);
 * direct and bare relay log in with valid tokens (the upstream's own limit). Each storm is short, so
 * every case runs `reps` times (after one warm-up storm per mode) and the median rate is reported.
 */
import { performance } from 'node:perf_hooks';
import { Conn, MODES, imapLogin, type Credentials, type Mode } from '../lib/client.js';
import type { Env } from '../lib/env.js';
import { runPool, sleep } from '../lib/pool.js';
import { median, type Row } from '../lib/report.js';

export interface StormOptions {
  clients: number;
  /** Storms per mode (each with fresh expired-token accounts for the proxy). */
  reps: number;
}

interface Counts {
  auth: { token: number; refresh: number };
}

export interface StormRun {
  seconds: number;
  ok: number;
  failed: number;
  errors: string[];
  tokenRequests: number;
  /** Password hashes verified by the proxy during the storm (cache misses). */
  scryptRuns: number;
}

/**
 * `clients` logins at once over `accounts`, spread round-robin over `ports` (default: the mode's one
 * listener). scrypt runs are those of the main proxy child.
 */
export async function storm(
  env: Env,
  mode: Mode,
  accounts: Credentials[],
  clients: number,
  ports: number[] = [env.imap[mode]],
): Promise<StormRun> {
  const before = await env.upstream.call<Counts>('stats');
  const scryptBefore = mode === 'proxy' ? await env.proxy.call<number>('scryptCalls') : 0;
  const t0 = performance.now();
  const run = await runPool(clients, clients, async (i) => {
    const conn = await Conn.open(ports[i % ports.length]!, env.ca, 60_000);
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
  const scryptRuns = mode === 'proxy' ? (await env.proxy.call<number>('scryptCalls')) - scryptBefore : 0;
  await sleep(500);
  return {
    seconds,
    ok: run.ok.length,
    failed: run.errors.length,
    errors: [...new Set(run.errors)].slice(0, 5),
    tokenRequests: after.auth.token - before.auth.token,
    scryptRuns,
  };
}

export async function runStorm(env: Env, o: StormOptions): Promise<{ rows: Row[]; raw: unknown }> {
  const expiredSets = Array.from({ length: o.reps }, (_, r) => env.storm[`a${r + 1}`]!);
  const coldSet = env.storm.b!;
  const accounts = coldSet.length;
  const warmCreds = (set: Credentials[]): Promise<unknown> =>
    env.proxy.call('warmCredentials', { usernames: set.map((c) => c.username), password: set[0]!.password });
  // Warm-up storm per mode (JIT, TLS code paths), with the credentials of the warm accounts cached.
  await warmCreds(env.warm);
  for (const mode of MODES) await storm(env, mode, env.warm, o.clients);

  const runs: Record<'direct' | 'bare' | 'expired' | 'warmAll', StormRun[]> = {
    direct: [],
    bare: [],
    expired: [],
    warmAll: [],
  };
  for (const set of expiredSets) {
    await warmCreds(set);
    runs.direct.push(await storm(env, 'direct', env.warm, o.clients));
    runs.bare.push(await storm(env, 'bare', env.warm, o.clients));
    runs.expired.push(await storm(env, 'proxy', set, o.clients));
    runs.warmAll.push(await storm(env, 'proxy', set, o.clients));
  }
  await env.proxy.call('clearCredentialCache');
  const cold = await storm(env, 'proxy', coldSet, o.clients);

  const rate = (rs: StormRun[]): number => median(rs.map((r) => r.ok / r.seconds));
  const direct = rate(runs.direct);
  const bare = rate(runs.bare);
  const expired = rate(runs.expired);
  const warmAll = rate(runs.warmAll);
  const coldRate = cold.ok / cold.seconds;
  const tokenCounts = runs.expired.map((r) => r.tokenRequests);
  const failed = (rs: StormRun[]): number => rs.reduce((s, r) => s + r.failed, 0);
  const title = `${o.clients} clients / ${accounts} accounts`;
  return {
    rows: [
      {
        benchmark: 'login storm',
        metric: `logins/s, tokens expired (${title})`,
        unit: '1/s',
        direct,
        bare,
        proxy: expired,
        ratio: expired / bare,
        target: 'upstream-bound',
      },
      {
        benchmark: 'login storm',
        metric: 'token requests per storm, tokens expired',
        unit: 'count',
        proxy: Math.max(...tokenCounts),
        target: `= ${accounts} every run`,
        pass: tokenCounts.every((n) => n === accounts),
      },
      {
        benchmark: 'login storm',
        metric: 'logins/s, tokens and credentials warm',
        unit: '1/s',
        direct,
        bare,
        proxy: warmAll,
        ratio: warmAll / bare,
      },
      {
        benchmark: 'login storm',
        metric: 'logins/s, cold credential cache',
        unit: '1/s',
        direct,
        bare,
        proxy: coldRate,
        ratio: coldRate / bare,
      },
      {
        benchmark: 'login storm',
        metric: 'scrypt runs, cold credential cache',
        unit: 'count',
        proxy: cold.scryptRuns,
        target: `${accounts} ideal (one per account)`,
      },
      {
        benchmark: 'login storm',
        metric: 'scrypt runs, credentials warm (max per storm)',
        unit: 'count',
        proxy: Math.max(...runs.expired.map((r) => r.scryptRuns), ...runs.warmAll.map((r) => r.scryptRuns)),
        target: '0',
        pass: [...runs.expired, ...runs.warmAll].every((r) => r.scryptRuns === 0),
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
        metric: 'failed logins (all runs)',
        unit: 'count',
        direct: failed(runs.direct),
        bare: failed(runs.bare),
        proxy: failed(runs.expired) + failed(runs.warmAll) + cold.failed,
        target: '0',
        pass:
          failed(runs.direct) +
            failed(runs.bare) +
            failed(runs.expired) +
            failed(runs.warmAll) +
            cold.failed ===
          0,
      },
    ],
    raw: { clients: o.clients, accounts, reps: o.reps, runs, cold },
  };
}

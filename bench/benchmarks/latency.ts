/**
 * (2) Login latency: a new connection, greeting, login, and one command (NOOP), closed afterwards,
 * with warm token and credential caches. Modes interleave per iteration; accounts rotate.
 * Also measured: one upstream round trip (NOOP on an open direct connection) and how many commands
 * and connections the upstream sees per login in each mode (extra upstream round trips).
 */
import { performance } from 'node:perf_hooks';
import { Conn, MODES, imapLogin, imapTagged, type Mode } from '../lib/client.js';
import type { Env } from '../lib/env.js';
import { median, percentile, type Row } from '../lib/report.js';

export interface LatencyOptions {
  iterations: number;
}

async function oneLogin(env: Env, mode: Mode, account: number): Promise<number> {
  const t0 = performance.now();
  const conn = await Conn.open(env.imap[mode], env.ca);
  try {
    await imapLogin(conn, mode, env.warm[account % env.warm.length]!);
    conn.write('N1 NOOP\r\n');
    await imapTagged(conn, 'N1');
    return performance.now() - t0;
  } finally {
    conn.close();
  }
}

interface UpstreamStats {
  imap: { connections: number; commands: number; logins: number };
}

export async function runLatency(env: Env, o: LatencyOptions): Promise<{ rows: Row[]; raw: unknown }> {
  // Warm-up: every account once per mode (fills the credential and token caches, JIT).
  for (let i = 0; i < env.warm.length; i++) for (const mode of MODES) await oneLogin(env, mode, i);

  const samples: Record<Mode, number[]> = { direct: [], bare: [], proxy: [] };
  for (let i = 0; i < o.iterations; i++) {
    for (let k = 0; k < MODES.length; k++) {
      const mode = MODES[(i + k) % MODES.length] as Mode;
      samples[mode].push(await oneLogin(env, mode, i));
    }
  }

  // One upstream round trip, as the proxy sees it.
  const conn = await Conn.open(env.imap.direct, env.ca);
  await imapLogin(conn, 'direct', env.warm[0]!);
  const rtts: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    conn.write(`R${i} NOOP\r\n`);
    await imapTagged(conn, `R${i}`);
    rtts.push(performance.now() - t0);
  }
  conn.close();
  const rtt = median(rtts);

  // Upstream exchanges per login, per mode.
  const perLogin: Record<Mode, number> = { direct: 0, bare: 0, proxy: 0 };
  for (const mode of MODES) {
    await env.upstream.call('resetImapStats');
    for (let i = 0; i < 10; i++) await oneLogin(env, mode, i);
    const s = await env.upstream.call<UpstreamStats>('stats');
    // Per login, not per connection: warm connections the pool opened and did not use yet count too.
    perLogin[mode] = s.imap.commands / s.imap.logins;
  }

  const med = { direct: median(samples.direct), bare: median(samples.bare), proxy: median(samples.proxy) };
  const p99 = {
    direct: percentile(samples.direct, 99),
    bare: percentile(samples.bare, 99),
    proxy: percentile(samples.proxy, 99),
  };
  const addedMedian = med.proxy - med.direct;
  const extraExchanges = perLogin.proxy - perLogin.direct;
  return {
    rows: [
      { benchmark: 'login latency', metric: 'connect+login+NOOP median', unit: 'ms', ...med },
      { benchmark: 'login latency', metric: 'connect+login+NOOP p99', unit: 'ms', ...p99 },
      {
        benchmark: 'login latency',
        metric: 'added over direct, median',
        unit: 'ms',
        bare: med.bare - med.direct,
        proxy: addedMedian,
        target: 'proxy ≤ 2 ms',
        pass: addedMedian <= 2,
      },
      {
        benchmark: 'login latency',
        metric: 'added over direct, p99',
        unit: 'ms',
        bare: p99.bare - p99.direct,
        proxy: p99.proxy - p99.direct,
      },
      {
        benchmark: 'login latency',
        metric: 'upstream commands per login',
        unit: 'count',
        ...perLogin,
        ratio: extraExchanges,
        target: 'ratio = extra upstream round trips ≤ 1',
        pass: extraExchanges <= 1,
      },
      { benchmark: 'login latency', metric: 'one upstream round trip (NOOP)', unit: 'ms', direct: rtt },
    ],
    raw: { iterations: o.iterations, samples, rtts, perLogin },
  };
}

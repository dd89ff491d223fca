/**
 * (6) Logins over a network: the upstream behind a delay relay (`delayMs` each way, 10 ms: Gmail from
 * a typical office), with the direct client, the bare relay and the proxy all reaching it through
 * that relay, so each pays the upstream round trips its dialogue needs. Connect, greeting, login,
 * NOOP, as the loopback latency benchmark does, interleaved per iteration, accounts rotating.
 *
 * Also: the proxy with its warm-connection pool off (what TLS resumption alone gives), the same
 * logins on loopback, and from those the round trips on each login's path,
 * (delayed − loopback) / RTT; and what the upstream saw per login through the relay (connections,
 * and turns: each time the talk went towards the upstream after it had spoken).
 */
import { performance } from 'node:perf_hooks';
import { Conn, imapLogin, imapTagged, type Mode } from '../lib/client.js';
import type { Env } from '../lib/env.js';
import { median, percentile, type Row } from '../lib/report.js';

export interface NetDelayOptions {
  iterations: number;
  delayMs: number;
}

type DelayMode = Mode | 'proxyNoPool';
const DELAY_MODES: DelayMode[] = ['direct', 'bare', 'proxy', 'proxyNoPool'];

async function oneLogin(env: Env, port: number, mode: DelayMode, account: number): Promise<number> {
  const t0 = performance.now();
  const conn = await Conn.open(port, env.ca);
  try {
    await imapLogin(conn, mode === 'proxyNoPool' ? 'proxy' : mode, env.warm[account % env.warm.length]!);
    conn.write('N1 NOOP\r\n');
    await imapTagged(conn, 'N1');
    return performance.now() - t0;
  } finally {
    conn.close();
  }
}

interface RelayStats {
  port: number;
  connections: number;
  turns: number;
}

export async function runNetDelay(env: Env, o: NetDelayOptions): Promise<{ rows: Row[]; raw: unknown }> {
  const delayed = await env.startDelayed(o.delayMs);
  const rtt = 2 * o.delayMs;
  try {
    const ports = delayed.imap;
    const loopback: Record<DelayMode, number> = { ...env.imap, proxyNoPool: Number.NaN };
    // Warm-up: every account once per mode (credential and token caches, JIT, TLS sessions).
    for (let i = 0; i < env.warm.length; i++)
      for (const mode of DELAY_MODES) await oneLogin(env, ports[mode], mode, i);

    const samples: Record<DelayMode, number[]> = { direct: [], bare: [], proxy: [], proxyNoPool: [] };
    for (let i = 0; i < o.iterations; i++) {
      for (let k = 0; k < DELAY_MODES.length; k++) {
        const mode = DELAY_MODES[(i + k) % DELAY_MODES.length] as DelayMode;
        samples[mode].push(await oneLogin(env, ports[mode], mode, i));
      }
    }
    const pool = await delayed.proxy.call<{ hits: number; misses: number } | null>('poolStats');

    // The same logins on loopback (the main children), for the round-trip estimate.
    const local: Record<Mode, number[]> = { direct: [], bare: [], proxy: [] };
    for (let i = 0; i < env.warm.length; i++)
      for (const mode of ['direct', 'bare', 'proxy'] as const) await oneLogin(env, loopback[mode], mode, i);
    for (let i = 0; i < Math.max(30, o.iterations / 2); i++) {
      for (const mode of ['direct', 'bare', 'proxy'] as const)
        local[mode].push(await oneLogin(env, loopback[mode], mode, i));
    }

    // What the upstream sees per login through the relay, one mode at a time.
    const perLogin: Record<DelayMode, { connections: number; turns: number }> = {
      direct: { connections: 0, turns: 0 },
      bare: { connections: 0, turns: 0 },
      proxy: { connections: 0, turns: 0 },
      proxyNoPool: { connections: 0, turns: 0 },
    };
    const batch = 20;
    for (const mode of DELAY_MODES) {
      await env.upstream.call('resetDelayStats');
      for (let i = 0; i < batch; i++) await oneLogin(env, ports[mode], mode, i);
      // Let warm connections opened by the last logins finish their dialogue (they count too).
      await new Promise((r) => setTimeout(r, 10 * rtt));
      const stats = await env.upstream.call<RelayStats[]>('delayStats');
      const imap = stats.find((s) => s.port === ports.direct) as RelayStats;
      perLogin[mode] = { connections: imap.connections / batch, turns: imap.turns / batch };
    }

    const med = (m: DelayMode): number => median(samples[m]);
    const p99 = (m: DelayMode): number => percentile(samples[m], 99);
    const localMed = (m: Mode): number => median(local[m]);
    // With no delay there are no round trips to count (only the relay's own hop).
    const rounds = (m: Mode): number => (rtt > 0 ? (med(m) - localMed(m)) / rtt : Number.NaN);
    const label = `login, ${o.delayMs} ms each way`;
    const ratioMedian = med('proxy') / med('direct');
    return {
      rows: [
        {
          benchmark: label,
          metric: 'connect+login+NOOP median',
          unit: 'ms',
          direct: med('direct'),
          bare: med('bare'),
          proxy: med('proxy'),
          ratio: ratioMedian,
          target: 'proxy/direct ≤ 0.5',
          pass: ratioMedian <= 0.5,
        },
        {
          benchmark: label,
          metric: 'connect+login+NOOP p99',
          unit: 'ms',
          direct: p99('direct'),
          bare: p99('bare'),
          proxy: p99('proxy'),
          ratio: p99('proxy') / p99('direct'),
        },
        {
          benchmark: label,
          metric: 'median, proxy with its pool off',
          unit: 'ms',
          direct: med('direct'),
          proxy: med('proxyNoPool'),
          ratio: med('proxyNoPool') / med('direct'),
        },
        {
          benchmark: label,
          metric: 'p99, proxy with its pool off',
          unit: 'ms',
          direct: p99('direct'),
          proxy: p99('proxyNoPool'),
          ratio: p99('proxyNoPool') / p99('direct'),
        },
        {
          benchmark: label,
          metric: 'round trips on the login path (est.)',
          unit: 'RTT',
          direct: rounds('direct'),
          bare: rounds('bare'),
          proxy: rounds('proxy'),
        },
        {
          benchmark: label,
          metric: 'upstream turns per login',
          unit: 'count',
          direct: perLogin.direct.turns,
          bare: perLogin.bare.turns,
          proxy: perLogin.proxy.turns,
          ratio: perLogin.proxyNoPool.turns,
          target: 'ratio column: pool off',
        },
        {
          benchmark: label,
          metric: 'upstream connections per login',
          unit: 'count',
          direct: perLogin.direct.connections,
          bare: perLogin.bare.connections,
          proxy: perLogin.proxy.connections,
          ratio: perLogin.proxyNoPool.connections,
          target: 'ratio column: pool off',
        },
        {
          benchmark: label,
          metric: 'loopback median (same run)',
          unit: 'ms',
          direct: localMed('direct'),
          bare: localMed('bare'),
          proxy: localMed('proxy'),
          ratio: localMed('proxy') / localMed('direct'),
        },
        ...(pool
          ? [
              {
                benchmark: label,
                metric: 'warm-connection hits / misses',
                unit: 'count',
                proxy: pool.hits,
                ratio: pool.misses,
              },
            ]
          : []),
      ],
      raw: { ...o, samples, local, perLogin, pool },
    };
  } finally {
    await delayed.stop();
  }
}

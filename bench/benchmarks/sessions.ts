/**
 * (3) Concurrent sessions: N logged-in IMAP sessions sitting in IDLE, TLS on both legs. The proxy
 * and the bare relay run in fresh child processes, so the RSS growth from a baseline (taken after a
 * short warm-up and a full GC) to N open sessions (after a full GC) is theirs alone. Direct has no
 * middle process: its columns show only failures and how fast the sessions opened.
 */
import { performance } from 'node:perf_hooks';
import { Conn, MODES, imapLogin, type Mode } from '../lib/client.js';
import type { Env } from '../lib/env.js';
import { runPool, sleep } from '../lib/pool.js';
import type { Row } from '../lib/report.js';
import type { Memory } from '../lib/rpc.js';

export interface SessionsOptions {
  n: number;
  concurrency: number;
}

async function idleSession(env: Env, mode: Mode, i: number): Promise<Conn> {
  const conn = await Conn.open(env.imap[mode], env.ca, 60_000);
  try {
    await imapLogin(conn, mode, env.warm[i % env.warm.length]!, 60_000);
    conn.write('I1 IDLE\r\n');
    const line = await conn.readLine(60_000);
    if (!line.startsWith('+')) throw new Error(`IDLE: ${line.slice(0, 200)}`);
    return conn;
  } catch (err) {
    conn.close();
    throw err;
  }
}

interface ModeResult {
  opened: number;
  failed: number;
  errors: string[];
  openSeconds: number;
  before?: Memory;
  after?: Memory;
  afterClose?: Memory;
}

export async function runSessions(env: Env, o: SessionsOptions): Promise<{ rows: Row[]; raw: unknown }> {
  await env.restartMiddle();
  const results = {} as Record<Mode, ModeResult>;
  for (const mode of MODES) {
    const middle = mode === 'proxy' ? env.proxy : mode === 'bare' ? env.bare : undefined;
    // Warm-up: one session per account (fills the caches, loads code), then all closed.
    const warm = await runPool(env.warm.length, 20, (i) => idleSession(env, mode, i));
    for (const c of warm.ok) c.close();
    await sleep(1000);
    const before = await middle?.memory();
    const t0 = performance.now();
    const run = await runPool(o.n, o.concurrency, (i) => idleSession(env, mode, i));
    const openSeconds = (performance.now() - t0) / 1000;
    await sleep(1000);
    const after = await middle?.memory();
    // Still there? A session the proxy dropped would show up as a closed socket here.
    const alive = run.ok.filter((c) => !c.socket.destroyed).length;
    for (const c of run.ok) c.close();
    await sleep(2000);
    const afterClose = await middle?.memory();
    results[mode] = {
      opened: alive,
      failed: o.n - alive,
      errors: [...new Set(run.errors)].slice(0, 5),
      openSeconds,
      ...(before ? { before } : {}),
      ...(after ? { after } : {}),
      ...(afterClose ? { afterClose } : {}),
    };
    console.error(`  sessions ${mode}: ${alive}/${o.n} open in ${openSeconds.toFixed(1)} s`);
  }
  const per = (m: Mode, key: keyof Memory): number | undefined => {
    const r = results[m];
    if (!r.before || !r.after || r.opened === 0) return undefined;
    return (r.after[key] - r.before[key]) / r.opened / 1024;
  };
  const rssBare = per('bare', 'rss');
  const rssProxy = per('proxy', 'rss');
  const failed = MODES.reduce((s, m) => s + results[m].failed, 0);
  const ratio = rssProxy !== undefined && rssBare !== undefined ? rssProxy / rssBare : undefined;
  return {
    rows: [
      {
        benchmark: 'sessions',
        metric: `RSS per idle session (N=${o.n})`,
        unit: 'KiB',
        bare: rssBare,
        proxy: rssProxy,
        ratio,
        target: 'ratio ≤ 1.2',
        pass: ratio !== undefined && ratio <= 1.2,
      },
      {
        benchmark: 'sessions',
        metric: 'JS heap used per session',
        unit: 'KiB',
        bare: per('bare', 'heapUsed'),
        proxy: per('proxy', 'heapUsed'),
      },
      {
        benchmark: 'sessions',
        metric: 'V8 heap committed per session',
        unit: 'KiB',
        bare: per('bare', 'heapTotal'),
        proxy: per('proxy', 'heapTotal'),
      },
      {
        benchmark: 'sessions',
        metric: 'failed sessions',
        unit: 'count',
        direct: results.direct.failed,
        bare: results.bare.failed,
        proxy: results.proxy.failed,
        target: '0',
        pass: failed === 0 && results.proxy.opened === o.n,
      },
      {
        benchmark: 'sessions',
        metric: 'sessions opened per second',
        unit: '1/s',
        direct: results.direct.opened / results.direct.openSeconds,
        bare: results.bare.opened / results.bare.openSeconds,
        proxy: results.proxy.opened / results.proxy.openSeconds,
        ratio:
          results.proxy.opened / results.proxy.openSeconds / (results.bare.opened / results.bare.openSeconds),
      },
    ],
    raw: { n: o.n, concurrency: o.concurrency, results },
  };
}

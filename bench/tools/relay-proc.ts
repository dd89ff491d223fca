/**
 * What the kernel sees of each relay while it relays: run time (schedstat, exact), minor page faults,
 * voluntary and involuntary context switches and run-queue waits per MB, for FETCHes of the small
 * mailbox (1,000 messages of 4 KiB) through the bare relay and the proxy, alternating. The things
 * callgrind cannot count (it sees user-space instructions only).
 * Usage: tsx bench/tools/relay-proc.ts [reps] [clear]   (both relays with the bench's heap floor)
 * Also the run time of each process's other threads (Node's "node" threads are V8's helpers: parallel
 * scavenging, concurrent compiling, sweeping). BENCH_BUCKETS=<n>: besides, the run time per byte of
 * every <n> transfers, to tell a warm-up from a process pair that settled in a dearer state.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { Conn, imapLogin, imapTagged } from '../lib/client.js';
import { heapFloorFlags, startEnv } from '../lib/env.js';

const reps = Number(process.argv[2] ?? 80);
const clear = process.argv[3] === 'clear';
/** The first transfers (JIT, TCP windows) are not counted. */
const WARMUP = 10;

interface ProcCounts {
  runNs: number;
  minorFaults: number;
  voluntarySwitches: number;
  involuntarySwitches: number;
  runQueueWaits: number;
}

function read(pid: number): ProcCounts {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1]);
  const sched = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map(Number);
  return {
    runNs: sched[0]!,
    // Field 10 of /proc/<pid>/stat; index 7 once the pid and command are split off.
    minorFaults: Number(stat[7]),
    voluntarySwitches: field('voluntary_ctxt_switches'),
    involuntarySwitches: field('nonvoluntary_ctxt_switches'),
    runQueueWaits: sched[2]!,
  };
}

/** Run time per thread name (ns), all of the process's threads. */
function threads(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const key = tid === String(pid) ? 'main' : name;
      out.set(key, (out.get(key) ?? 0) + ns);
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}
/** All threads' run time per byte of each transfer, warm-up included. */
const perTransfer: Record<string, number[]> = {};
const threadTotals = { bare: new Map<string, number>(), proxy: new Map<string, number>() };

const env = await startEnv({
  mailboxes: { bigBytes: 1000, smallCount: 1000, smallBytes: 4096 },
  stormSets: [],
  stormAccounts: 0,
  middleFlags: heapFloorFlags(),
});
const modes = ['bare', 'proxy'] as const;
const conns: Partial<Record<(typeof modes)[number], Conn>> = {};
for (const m of modes) {
  const c = clear ? await Conn.open(env.imapPlain[m], undefined) : await Conn.open(env.imap[m], env.ca);
  await imapLogin(c, m, env.warm[0]!);
  c.write('S1 SELECT SMALL\r\n');
  await imapTagged(c, 'S1');
  conns[m] = c;
}
const totals = Object.fromEntries(
  modes.map((m) => [
    m,
    { runNs: 0, minorFaults: 0, voluntarySwitches: 0, involuntarySwitches: 0, runQueueWaits: 0 },
  ]),
) as Record<(typeof modes)[number], ProcCounts>;
let bytes = 0;
for (let rep = 0; rep < reps; rep++) {
  const order = rep % 2 ? (['bare', 'proxy'] as const) : (['proxy', 'bare'] as const);
  for (const m of order) {
    const pid = (m === 'bare' ? env.bare : env.proxy).pid!;
    const before = read(pid);
    const tb = threads(pid);
    conns[m]!.write(`F${rep} FETCH 1:* (BODY.PEEK[])\r\n`);
    const n = await conns[m]!.countUntil(`\r\nF${rep} OK`);
    await conns[m]!.readLine();
    const after = read(pid);
    const ta = threads(pid);
    let sum = 0;
    for (const [k, v] of ta) sum += v - (tb.get(k) ?? 0);
    (perTransfer[m] ??= []).push(sum / n);
    if (rep < WARMUP) continue;
    for (const [k, v] of ta) threadTotals[m].set(k, (threadTotals[m].get(k) ?? 0) + v - (tb.get(k) ?? 0));
    if (m === 'bare') bytes += n;
    for (const k of Object.keys(before) as (keyof ProcCounts)[]) totals[m][k] += after[k] - before[k];
  }
}
const mb = bytes / 1e6;
for (const m of modes) {
  const t = totals[m];
  console.log(
    `${m}${clear ? ' clear' : ''} per MB: run ${(t.runNs / 1e6 / mb).toFixed(3)} ms, minor faults ${(t.minorFaults / mb).toFixed(2)}, context switches ${(t.voluntarySwitches / mb).toFixed(2)} voluntary / ${(t.involuntarySwitches / mb).toFixed(2)} involuntary, run-queue waits ${(t.runQueueWaits / mb).toFixed(2)}`,
  );
}
for (const m of modes) {
  const parts = [...threadTotals[m]].map(([k, v]) => `${k} ${(v / 1e6 / mb).toFixed(3)}`);
  console.log(`${m} run ms per MB by thread: ${parts.join(', ')}`);
}
const bucketSize = Number(process.env.BENCH_BUCKETS ?? 0);
for (let i = 0; bucketSize > 0 && i < reps; i += bucketSize) {
  const avg = (m: string): number => {
    const xs = perTransfer[m]!.slice(i, i + bucketSize);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  // ns per byte is ms per MB.
  console.log(
    `transfers ${i}-${Math.min(reps, i + bucketSize) - 1}: all threads ms/MB bare ${avg('bare').toFixed(3)}, proxy ${avg('proxy').toFixed(3)}, bare/proxy ${(avg('bare') / avg('proxy')).toFixed(3)}`,
  );
}
for (const c of Object.values(conns)) c?.close();
await env.stop();

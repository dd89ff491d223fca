/**
 * What the kernel sees of each relay while it relays: run time (schedstat, exact), minor page faults,
 * voluntary and involuntary context switches and run-queue waits per MB, for FETCHes of the small
 * mailbox (1,000 messages of 4 KiB) through the bare relay and the proxy, alternating. The things
 * callgrind cannot count (it sees user-space instructions only).
 * Usage: tsx bench/tools/relay-proc.ts [reps] [clear]   (both relays with the bench's heap floor)
 */
import { readFileSync } from 'node:fs';
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
    conns[m]!.write(`F${rep} FETCH 1:* (BODY.PEEK[])\r\n`);
    const n = await conns[m]!.countUntil(`\r\nF${rep} OK`);
    await conns[m]!.readLine();
    const after = read(pid);
    if (rep < WARMUP) continue;
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
for (const c of Object.values(conns)) c?.close();
await env.stop();

/**
 * A/B probe for the relay: many transfers through the bare relay and the proxy, alternating, printing
 * relay CPU per MB and MB/s for each. `smtp`: a 10 MB DATA; `imap`: FETCH of 1,000 messages of 4 KiB.
 * Usage: tsx bench/tools/relay-ab.ts [smtp|imap|imapbig] [reps] [clear]
 * `clear`: the client's leg to both relays in clear text (the upstream leg stays TLS).
 * BENCH_PROFILE_DIR=<dir>: --cpu-prof profiles of both relay children there.
 * BENCH_CALLGRIND_DIR=<dir>: both relay children under valgrind's callgrind; prints the instructions
 * each executed per MB relayed (zeroed before and dumped after every transfer, dumps kept there).
 * Both relays run with the bench's old-generation floor (BENCH_HEAP_FLOOR_MB=0: Node's defaults;
 * see heapFloorFlags in lib/env.ts). BENCH_GC_FIRST=1: one full collection in both before the first
 * transfer, so that their heap limits start from the same state (at the defaults, that is what puts
 * the proxy into the same cycle of full collections as the bare relay).
 */
import { performance } from 'node:perf_hooks';
import { Conn, imapLogin, imapTagged, smtpLogin, smtpReply, type Mode } from '../lib/client.js';
import { heapFloorFlags, startEnv } from '../lib/env.js';
import { makeMessage } from '../lib/messages.js';
import { median } from '../lib/report.js';
import { dumpCounts, zeroCounts } from '../lib/callgrind.js';

/** `imapbig`: one FETCH of a 20 MB message instead of the 1,000 small ones. */
const big = process.argv[2] === 'imapbig';
const kind = process.argv[2] === 'imap' || big ? 'imap' : 'smtp';
const reps = Number(process.argv[3] ?? 20);
const clear = process.argv[4] === 'clear';
const callgrindDir = process.env.BENCH_CALLGRIND_DIR;
const env = await startEnv({
  mailboxes: { bigBytes: big ? 20e6 : 1000, smallCount: 1000, smallBytes: 4096 },
  stormSets: [],
  stormAccounts: 0,
  experiments: ['cached-upstream-context'],
  ...(process.env.BENCH_PROFILE_DIR ? { cpuProfDir: process.env.BENCH_PROFILE_DIR } : {}),
  ...(callgrindDir ? { callgrindDir } : {}),
  middleFlags: heapFloorFlags(),
});
const message = Buffer.concat([makeMessage('ab', 10e6), Buffer.from('.\r\n')]);
const modes: ('bare' | 'proxy')[] = ['bare', 'proxy'];
const conns: Partial<Record<Mode, Conn>> = {};
for (const m of modes) {
  if (kind === 'smtp') {
    const c = clear ? await Conn.open(env.smtpPlain[m], undefined) : await Conn.open(env.smtp[m], env.ca);
    await smtpLogin(c, m, env.warm[0]!);
    conns[m] = c;
  } else {
    const c = clear ? await Conn.open(env.imapPlain[m], undefined) : await Conn.open(env.imap[m], env.ca);
    await imapLogin(c, m, env.warm[0]!);
    c.write(`S1 SELECT ${big ? 'BIG' : 'SMALL'}\r\n`);
    await imapTagged(c, 'S1');
    conns[m] = c;
  }
}
const cpu: Record<string, number[]> = { bare: [], proxy: [] };
/** Garbage collection during the timed transfers, by V8 kind (1 scavenge, 4 mark-compact, ...). */
const gcUsed: Record<string, Record<string, { count: number; ms: number }>> = { bare: {}, proxy: {} };
const mbps: Record<string, number[]> = { bare: [], proxy: [] };
/**
 * The same CPU per MB, user and system apart. Linux splits the (exact) total by tick samples, so one
 * transfer's split is coarse (a best of 0.000 is common); the medians are what to read.
 */
const userCpu: Record<string, number[]> = { bare: [], proxy: [] };
const systemCpu: Record<string, number[]> = { bare: [], proxy: [] };
/** Millions of instructions per MB (under callgrind). */
const instr: Record<string, number[]> = { bare: [], proxy: [] };
const instrAll: Record<string, number[]> = { bare: [], proxy: [] };
/** Main thread without Node's copies of short reads (see bench/lib/callgrind.ts). */
const instrNet: Record<string, number[]> = { bare: [], proxy: [] };
if (process.env.BENCH_GC_FIRST) await Promise.all([env.bare.call('memory'), env.proxy.call('memory')]);
for (let i = 0; i <= reps; i++) {
  for (const m of i % 2 ? modes : [...modes].reverse()) {
    const child = m === 'bare' ? env.bare : env.proxy;
    const c = conns[m]!;
    if (callgrindDir) await zeroCounts(child.pid!);
    const s0 = await child.call<{ user: number; system: number }>('cpuSplit');
    const g0 = await child.call<Record<string, { count: number; ms: number }>>('gc');
    const t0 = performance.now();
    let bytes = message.length;
    if (kind === 'smtp') {
      c.write('MAIL FROM:<bob@bench.test>\r\nRCPT TO:<alice@bench.test>\r\nDATA\r\n');
      await smtpReply(c, 250);
      await smtpReply(c, 250);
      await smtpReply(c, 354);
      c.write(message);
      await smtpReply(c, 250, 120_000);
    } else {
      c.write(`F${i} FETCH 1:* (BODY.PEEK[])\r\n`);
      bytes = await c.countUntil(`\r\nF${i} OK`);
      await c.readLine();
    }
    const s = (performance.now() - t0) / 1000;
    const s1 = await child.call<{ user: number; system: number }>('cpuSplit');
    const used = s1.user + s1.system - (s0.user + s0.system);
    const g1 = await child.call<Record<string, { count: number; ms: number }>>('gc');
    const counted = callgrindDir ? await dumpCounts(child.pid!, callgrindDir) : undefined;
    if (i === 0) continue;
    if (counted) {
      instr[m]!.push(counted.instructions / 1e6 / (bytes / 1e6));
      instrAll[m]!.push(counted.allThreads / 1e6 / (bytes / 1e6));
      instrNet[m]!.push((counted.instructions - counted.shortReadCopies) / 1e6 / (bytes / 1e6));
    }
    for (const [k, v] of Object.entries(g1)) {
      const t = (gcUsed[m]![k] ??= { count: 0, ms: 0 });
      t.count += v.count - (g0[k]?.count ?? 0);
      t.ms += v.ms - (g0[k]?.ms ?? 0);
    }
    cpu[m]!.push(used / 1000 / (bytes / 1e6));
    userCpu[m]!.push((s1.user - s0.user) / 1000 / (bytes / 1e6));
    systemCpu[m]!.push((s1.system - s0.system) / 1000 / (bytes / 1e6));
    mbps[m]!.push(bytes / 1e6 / s);
  }
}
for (const m of modes) {
  console.log(
    `${kind}${clear ? ' clear' : ''} ${m}: CPU ms/MB best ${Math.min(...cpu[m]!).toFixed(2)} median ${median(cpu[m]!).toFixed(2)} [${cpu[m]!.map((x) => x.toFixed(2)).join(' ')}]; MB/s median ${median(mbps[m]!).toFixed(0)}`,
  );
}
for (const m of modes) {
  console.log(
    `${m}: user ms/MB best ${Math.min(...userCpu[m]!).toFixed(3)} median ${median(userCpu[m]!).toFixed(3)}; system best ${Math.min(...systemCpu[m]!).toFixed(3)} median ${median(systemCpu[m]!).toFixed(3)}`,
  );
}
if (callgrindDir) {
  for (const m of modes) {
    console.log(
      `${m}: main-thread instructions per MB (millions) best ${Math.min(...instr[m]!).toFixed(3)} median ${median(instr[m]!).toFixed(3)} [${instr[m]!.map((x) => x.toFixed(2)).join(' ')}]; all threads median ${median(instrAll[m]!).toFixed(2)}`,
    );
  }
  for (const m of modes) {
    console.log(
      `${m}: the same without short-read copies best ${Math.min(...instrNet[m]!).toFixed(3)} median ${median(instrNet[m]!).toFixed(3)} [${instrNet[m]!.map((x) => x.toFixed(2)).join(' ')}]`,
    );
  }
  console.log(
    `proxy/bare without short-read copies: best ${(Math.min(...instrNet.proxy!) / Math.min(...instrNet.bare!)).toFixed(3)}, medians ${(median(instrNet.proxy!) / median(instrNet.bare!)).toFixed(3)}`,
  );
  console.log(
    `proxy/bare main-thread instructions: best ${(Math.min(...instr.proxy!) / Math.min(...instr.bare!)).toFixed(3)}, medians ${(median(instr.proxy!) / median(instr.bare!)).toFixed(3)}`,
  );
}
for (const m of modes) {
  const parts = Object.entries(gcUsed[m]!).map(
    ([k, v]) => `kind ${k}: ${v.count} × ${(v.ms / v.count).toFixed(2)} ms`,
  );
  console.log(`${m} GC during transfers: ${parts.join(', ') || 'none'}`);
}
for (const m of modes) {
  const child = m === 'bare' ? env.bare : env.proxy;
  console.log(
    `${m} young generation at the end: ${(await child.call<number>('youngGeneration')).toFixed(1)} MB`,
  );
}
for (const c of Object.values(conns)) c?.close();
await env.stop();

/**
 * A/B probe for the relay: many transfers through the bare relay and the proxy, alternating, printing
 * relay CPU per MB and MB/s for each. `smtp`: a 10 MB DATA; `imap`: FETCH of 1,000 messages of 4 KiB.
 * Usage: tsx bench/tools/relay-ab.ts [smtp|imap] [reps] [clear]
 * `clear`: the client's leg to both relays in clear text (the upstream leg stays TLS).
 * BENCH_PROFILE_DIR=<dir>: --cpu-prof profiles of both relay children there.
 */
import { performance } from 'node:perf_hooks';
import { Conn, imapLogin, imapTagged, smtpLogin, smtpReply, type Mode } from '../lib/client.js';
import { startEnv } from '../lib/env.js';
import { makeMessage } from '../lib/messages.js';
import { median } from '../lib/report.js';

const kind = process.argv[2] === 'imap' ? 'imap' : 'smtp';
const reps = Number(process.argv[3] ?? 20);
const clear = process.argv[4] === 'clear';
const env = await startEnv({
  mailboxes: { bigBytes: 1000, smallCount: 1000, smallBytes: 4096 },
  stormSets: [],
  stormAccounts: 0,
  experiments: ['cached-upstream-context'],
  ...(process.env.BENCH_PROFILE_DIR ? { cpuProfDir: process.env.BENCH_PROFILE_DIR } : {}),
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
    c.write('S1 SELECT SMALL\r\n');
    await imapTagged(c, 'S1');
    conns[m] = c;
  }
}
const cpu: Record<string, number[]> = { bare: [], proxy: [] };
/** Garbage collection during the timed transfers, by V8 kind (1 scavenge, 4 mark-compact, ...). */
const gcUsed: Record<string, Record<string, { count: number; ms: number }>> = { bare: {}, proxy: {} };
const mbps: Record<string, number[]> = { bare: [], proxy: [] };
for (let i = 0; i <= reps; i++) {
  for (const m of i % 2 ? modes : [...modes].reverse()) {
    const child = m === 'bare' ? env.bare : env.proxy;
    const c = conns[m]!;
    const c0 = await child.call<number>('cpu');
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
    const used = (await child.call<number>('cpu')) - c0;
    const g1 = await child.call<Record<string, { count: number; ms: number }>>('gc');
    if (i === 0) continue;
    for (const [k, v] of Object.entries(g1)) {
      const t = (gcUsed[m]![k] ??= { count: 0, ms: 0 });
      t.count += v.count - (g0[k]?.count ?? 0);
      t.ms += v.ms - (g0[k]?.ms ?? 0);
    }
    cpu[m]!.push(used / 1000 / (bytes / 1e6));
    mbps[m]!.push(bytes / 1e6 / s);
  }
}
for (const m of modes) {
  console.log(
    `${kind}${clear ? ' clear' : ''} ${m}: CPU ms/MB best ${Math.min(...cpu[m]!).toFixed(2)} median ${median(cpu[m]!).toFixed(2)} [${cpu[m]!.map((x) => x.toFixed(2)).join(' ')}]; MB/s median ${median(mbps[m]!).toFixed(0)}`,
  );
}
for (const m of modes) {
  const parts = Object.entries(gcUsed[m]!).map(
    ([k, v]) => `kind ${k}: ${v.count} × ${(v.ms / v.count).toFixed(2)} ms`,
  );
  console.log(`${m} GC during transfers: ${parts.join(', ') || 'none'}`);
}
for (const c of Object.values(conns)) c?.close();
await env.stop();

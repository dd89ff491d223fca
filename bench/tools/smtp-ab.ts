/**
 * A/B probe for the SMTP relay: many 10 MB DATA transfers through the bare relay and the proxy,
 * alternating, printing relay CPU per MB and MB/s for each. Usage: tsx bench/tools/smtp-ab.ts [reps]
 */
import { performance } from 'node:perf_hooks';
import { Conn, smtpLogin, smtpReply, type Mode } from '../lib/client.js';
import { startEnv } from '../lib/env.js';
import { makeMessage } from '../lib/messages.js';
import { median } from '../lib/report.js';

const reps = Number(process.argv[2] ?? 20);
const env = await startEnv({
  mailboxes: { bigBytes: 1000, smallCount: 1, smallBytes: 1000 },
  stormSets: [],
  stormAccounts: 0,
  experiments: ['cached-upstream-context'],
});
const message = Buffer.concat([makeMessage('ab', 10e6), Buffer.from('.\r\n')]);
const modes: ('bare' | 'proxy')[] = ['bare', 'proxy'];
const conns: Partial<Record<Mode, Conn>> = {};
for (const m of modes) {
  const c = await Conn.open(env.smtp[m], env.ca);
  await smtpLogin(c, m, env.warm[0]!);
  conns[m] = c;
}
const cpu: Record<string, number[]> = { bare: [], proxy: [] };
const mbps: Record<string, number[]> = { bare: [], proxy: [] };
for (let i = 0; i <= reps; i++) {
  for (const m of i % 2 ? modes : [...modes].reverse()) {
    const child = m === 'bare' ? env.bare : env.proxy;
    const c = conns[m]!;
    const c0 = await child.call<number>('cpu');
    const t0 = performance.now();
    c.write('MAIL FROM:<bob@bench.test>\r\nRCPT TO:<alice@bench.test>\r\nDATA\r\n');
    await smtpReply(c, 250);
    await smtpReply(c, 250);
    await smtpReply(c, 354);
    c.write(message);
    await smtpReply(c, 250, 120_000);
    const s = (performance.now() - t0) / 1000;
    const used = (await child.call<number>('cpu')) - c0;
    if (i === 0) continue;
    cpu[m]!.push(used / 1000 / (message.length / 1e6));
    mbps[m]!.push(message.length / 1e6 / s);
  }
}
for (const m of modes) {
  console.log(
    `${m}: CPU ms/MB median ${median(cpu[m]!).toFixed(2)} [${cpu[m]!.map((x) => x.toFixed(2)).join(' ')}]; MB/s median ${median(mbps[m]!).toFixed(0)}`,
  );
}
for (const c of Object.values(conns)) c?.close();
await env.stop();

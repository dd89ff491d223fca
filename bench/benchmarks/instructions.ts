/**
 * (8) Relay instructions (`--only instructions`, not in the default run): the bare relay and the proxy
 * under valgrind's callgrind, counting the instructions each one's main thread executes per MB relayed,
 * for the throughput benchmark's three transfers with both client legs.
 *
 * Why: relay CPU time per MB on this two-core VM moves by ±10 % from run to run, as much as the gap
 * being looked for, and there are no hardware counters here for `perf stat`. The instruction count is
 * the same on an idle and on a busy machine. What it does not see: the kernel's share (the syscalls:
 * the same calls in both with a TLS client leg, fewer writes in the proxy into a plain one), cache
 * misses, and timing effects that change how many bytes each read finds (a read shorter than 64 KiB
 * costs Node a copy; see docs/performance.md). The proxy runs without its metrics here: their
 * event-loop monitor's 10 ms timer would fire some 50 times as often per MB under valgrind.
 * Under valgrind the relays run about 50 times slower, so V8 needs more transfers to settle: the first
 * `warmups` rounds are not counted.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Conn, smtpLogin } from '../lib/client.js';
import { callgrindAvailable, dumpCounts, zeroCounts } from '../lib/callgrind.js';
import { heapFloorFlags, startEnv, type Env } from '../lib/env.js';
import { makeMessage } from '../lib/messages.js';
import { median, type Row } from '../lib/report.js';
import { fetchAll, imapSession, legOf, loginMode, sendMail } from './throughput.js';

export interface InstructionsOptions {
  /** Rounds (every transfer once per relay) before counting. */
  warmups: number;
  /** Counted rounds. */
  samples: number;
  bigBytes: number;
  smallCount: number;
  smallBytes: number;
  smtpBytes: number;
}

/**
 * How far the counts of two relays doing the same work still differ: the number of reads per MB
 * (each costs a call into JavaScript) follows the TCP window, i.e. timing, under valgrind too.
 */
const TOLERANCE = 1.02;
/**
 * With the client leg in clear text the two do not do the same work: into a plain socket the proxy
 * batches the chunks of a pass (a cork, an immediate and one `writev` per pass), which costs a few
 * user-space instructions to save system calls, and those callgrind does not count. The CPU per MB of the
 * throughput benchmark is where that trade is judged; this bounds what it costs in user space.
 */
const TOLERANCE_PLAIN_LEG = 1.05;

type Relay = 'bare' | 'proxy';
type Case = 'IMAP 20 MB' | 'IMAP small' | 'SMTP 10 MB';
const CASES: Case[] = ['IMAP 20 MB', 'IMAP small', 'SMTP 10 MB'];

interface Counts {
  /** Millions of main-thread instructions per MB, one per counted transfer. */
  main: number[];
  /** The same without Node's copies of short reads (timing under valgrind decides how many). */
  net: number[];
  /** The same for all threads (V8's compiler and GC helpers too). */
  all: number[];
}

export async function runInstructions(o: InstructionsOptions): Promise<{ rows: Row[]; raw: unknown }> {
  if (!(await callgrindAvailable())) {
    return {
      rows: [
        {
          benchmark: 'instructions',
          metric: 'skipped: valgrind (callgrind) is not installed',
          unit: '',
        },
      ],
      raw: { skipped: true },
    };
  }
  // BENCH_CALLGRIND_DIR: keep every dump there (per relay, dump N is transfer N in run order: the
  // three cases per round, the TLS leg's rounds, then the clear leg's), for callgrind_annotate.
  const keep = process.env.BENCH_CALLGRIND_DIR;
  if (keep) mkdirSync(keep, { recursive: true });
  const dir = keep ?? mkdtempSync(join(tmpdir(), 'xoauth-callgrind-'));
  const env = await startEnv({
    mailboxes: { bigBytes: o.bigBytes, smallCount: o.smallCount, smallBytes: o.smallBytes },
    stormSets: [],
    stormAccounts: 0,
    callgrindDir: dir,
    // The same GC regime in both relays, as in the throughput benchmark (see heapFloorFlags).
    middleFlags: heapFloorFlags(),
  });
  const rows: Row[] = [];
  const raw: Record<string, Record<Case, Record<Relay, Counts>>> = {};
  try {
    for (const clientLeg of ['tls', 'clear'] as const) {
      const result = await countLeg(env, clientLeg, dir, o, keep !== undefined);
      raw[clientLeg] = result;
      const label = clientLeg === 'clear' ? ', clear' : '';
      const tolerance = clientLeg === 'clear' ? TOLERANCE_PLAIN_LEG : TOLERANCE;
      // The least of the counted transfers is the relay's own work: no collection ran in it and V8
      // had settled (the medians show what GC and late compiles add).
      const row = (c: Case, what: keyof Counts, name: string, least: boolean): Row => {
        const pick = least ? (xs: number[]) => Math.min(...xs) : median;
        const bare = pick(result[c].bare[what]);
        const proxy = pick(result[c].proxy[what]);
        return {
          benchmark: 'instructions',
          metric: `${name} (${least ? 'least' : 'median'} of ${o.samples}), ${c}${label}`,
          unit: 'M/MB',
          bare,
          proxy,
          ratio: proxy / bare,
          target: least ? `proxy/bare ≤ ${tolerance}` : '',
          ...(least ? { pass: proxy / bare <= tolerance } : {}),
        };
      };
      for (const c of CASES)
        rows.push(row(c, 'net', 'relay instructions, main thread, short-read copies apart', true));
      for (const c of CASES) rows.push(row(c, 'main', 'relay instructions, main thread', false));
      for (const c of CASES) rows.push(row(c, 'all', 'relay instructions, all threads', false));
    }
  } finally {
    await env.stop();
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
  return { rows, raw: { ...raw, warmups: o.warmups, samples: o.samples } };
}

async function countLeg(
  env: Env,
  clientLeg: 'tls' | 'clear',
  dir: string,
  o: InstructionsOptions,
  keepDumps: boolean,
): Promise<Record<Case, Record<Relay, Counts>>> {
  const leg = legOf(env, clientLeg);
  const relays: Relay[] = ['bare', 'proxy'];
  const message = Buffer.concat([makeMessage('smtp bench', o.smtpBytes), Buffer.from('.\r\n')]);
  const sessions: Record<Relay, { big: Conn; small: Conn; smtp: Conn }> = {} as never;
  for (const relay of relays) {
    const smtp = await Conn.open(leg.smtp[relay] as number, leg.ca);
    await smtpLogin(smtp, loginMode(env, relay), env.warm[0]!);
    sessions[relay] = {
      big: await imapSession(env, leg, relay, 'BIG'),
      small: await imapSession(env, leg, relay, 'SMALL'),
      smtp,
    };
  }
  const counts = Object.fromEntries(
    CASES.map((c) => [c, { bare: { main: [], net: [], all: [] }, proxy: { main: [], net: [], all: [] } }]),
  ) as unknown as Record<Case, Record<Relay, Counts>>;
  /** Runs one transfer through `relay` (it returns the bytes moved), counting it when `record`. */
  const counted = async (relay: Relay, c: Case, record: boolean, transfer: () => Promise<number>) => {
    const child = relay === 'bare' ? env.bare : env.proxy;
    await zeroCounts(child.pid!);
    const bytes = await transfer();
    const dump = await dumpCounts(child.pid!, dir, keepDumps);
    if (!record) return;
    counts[c][relay].main.push(dump.instructions / 1e6 / (bytes / 1e6));
    counts[c][relay].net.push((dump.instructions - dump.shortReadCopies) / 1e6 / (bytes / 1e6));
    counts[c][relay].all.push(dump.allThreads / 1e6 / (bytes / 1e6));
  };
  for (let round = 0; round < o.warmups + o.samples; round++) {
    const record = round >= o.warmups;
    // Alternating which relay goes first, as the throughput benchmark does.
    for (const relay of round % 2 ? [...relays].reverse() : relays) {
      const s = sessions[relay];
      await counted(relay, 'IMAP 20 MB', record, async () => (await fetchAll(s.big)).bytes);
      await counted(relay, 'IMAP small', record, async () => (await fetchAll(s.small)).bytes);
      await counted(relay, 'SMTP 10 MB', record, async () => {
        await sendMail(s.smtp, message);
        return message.length;
      });
    }
  }
  for (const s of Object.values(sessions)) for (const conn of Object.values(s)) conn.close();
  return counts;
}

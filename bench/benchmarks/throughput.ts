/**
 * (1) Throughput: one persistent, logged-in connection per mode; the timed part is one FETCH (or one
 * SMTP transaction) from the command to its final reply. Each case runs in a block of its own, the
 * modes rotating within it so that drift on a shared machine hits all three alike.
 *
 * The proxy is compared with the bare relay over several rounds, each with freshly started relay
 * processes. Why rounds: two identical bare relays (`--aa`) differ by up to 5-9 % in one pair of
 * processes, more than the repetitions inside it vary, so the process pair is the unit that repeats.
 * Each round gives one paired ratio per case; the ratio shown is their geometric mean with its 95 %
 * interval, and a case passes unless the whole interval lies below 1.0 (the proxy shown to be
 * slower or dearer than the bare relay).
 */
import { performance } from 'node:perf_hooks';
import { Conn, MODES, imapLogin, imapTagged, smtpLogin, smtpReply, type Mode } from '../lib/client.js';
import type { Env } from '../lib/env.js';
import { makeMessage } from '../lib/messages.js';
import { judgeRatio, mean, median, ratioEstimate, type Row } from '../lib/report.js';

export interface ThroughputOptions {
  /** Rounds, each with fresh relay processes. */
  rounds: number;
  /** Timed repetitions per round and client leg. */
  reps: number;
  /** Untimed repetitions before them, per case (JIT, young generation, TCP windows). */
  warmups: number;
  smtpBytes: number;
  bigBytes: number;
  smallCount: number;
}

type Samples = Record<Mode, number[]>;
/** The `gc` RPC's key for mark-compact collections (perf_hooks' NODE_PERFORMANCE_GC_MAJOR). */
const MAJOR_GC = '4';
/** FETCHes of the small mailbox per timed sample. */
const SMALL_FETCHES = 5;

/** Where a mode's client connects, and with which CA (none: clear text). */
export interface Leg {
  modes: Mode[];
  imap: Partial<Record<Mode, number>>;
  smtp: Partial<Record<Mode, number>>;
  ca: string | undefined;
  label: string;
}

export function legOf(env: Env, clientLeg: ClientLeg): Leg {
  return clientLeg === 'tls'
    ? { modes: MODES, imap: env.imap, smtp: env.smtp, ca: env.ca, label: '' }
    : { modes: ['bare', 'proxy'], imap: env.imapPlain, smtp: env.smtpPlain, ca: undefined, label: ', clear' };
}

/** How a mode's client logs in: in an A/A run the "proxy" is a bare relay. */
export function loginMode(env: Env, mode: Mode): Mode {
  return env.aa && mode === 'proxy' ? 'bare' : mode;
}

export async function imapSession(env: Env, leg: Leg, mode: Mode, mailbox: string): Promise<Conn> {
  const conn = await Conn.open(leg.imap[mode] as number, leg.ca);
  await imapLogin(conn, loginMode(env, mode), env.warm[0]!);
  conn.write(`S1 SELECT ${mailbox}\r\n`);
  await imapTagged(conn, 'S1');
  return conn;
}

let tagNo = 0;
/**
 * Seconds and bytes for `times` FETCHes of the whole selected mailbox, one after the other (a FETCH
 * of 1,000 small messages takes ~10 ms here, too short a window to time alone on a busy machine).
 */
export async function fetchAll(conn: Conn, times = 1): Promise<{ seconds: number; bytes: number }> {
  const t0 = performance.now();
  let bytes = 0;
  for (let i = 0; i < times; i++) {
    const tag = `F${++tagNo}`;
    conn.write(`${tag} FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])\r\n`);
    bytes += await conn.countUntil(`\r\n${tag} OK`);
    await conn.readLine();
  }
  return { seconds: (performance.now() - t0) / 1000, bytes: bytes / times };
}

export async function sendMail(conn: Conn, data: Buffer): Promise<number> {
  const t0 = performance.now();
  conn.write('MAIL FROM:<bob@bench.test>\r\nRCPT TO:<alice@bench.test>\r\nDATA\r\n');
  await smtpReply(conn, 250);
  await smtpReply(conn, 250);
  await smtpReply(conn, 354);
  conn.write(data);
  await smtpReply(conn, 250, 120_000);
  return (performance.now() - t0) / 1000;
}

type ClientLeg = 'tls' | 'clear';

/** One round's samples for one client leg: per mode, one value per repetition. */
interface LegSamples {
  bigMBps: Samples;
  smallMBps: Samples;
  smallMsgs: Samples;
  smtpMBps: Samples;
  /** CPU ms of the relay process per MB moved (bare and proxy only). */
  cpuBig: Samples;
  cpuSmall: Samples;
  cpuSmtp: Samples;
  /** Full (mark-compact) collections in each relay during the round. */
  fullCollections: Record<'bare' | 'proxy', number>;
  bigBytes: number;
  smallBytes: number;
}

async function measureLeg(env: Env, leg: Leg, o: ThroughputOptions, message: Buffer): Promise<LegSamples> {
  const modes = leg.modes;
  const big: Partial<Record<Mode, Conn>> = {};
  const small: Partial<Record<Mode, Conn>> = {};
  const smtp: Partial<Record<Mode, Conn>> = {};
  for (const mode of modes) {
    big[mode] = await imapSession(env, leg, mode, 'BIG');
    small[mode] = await imapSession(env, leg, mode, 'SMALL');
    const s = await Conn.open(leg.smtp[mode] as number, leg.ca);
    await smtpLogin(s, loginMode(env, mode), env.warm[0]!);
    smtp[mode] = s;
  }
  const empty = (): Samples => ({ direct: [], bare: [], proxy: [] });
  const out: LegSamples = {
    bigMBps: empty(),
    smallMBps: empty(),
    smallMsgs: empty(),
    smtpMBps: empty(),
    cpuBig: empty(),
    cpuSmall: empty(),
    cpuSmtp: empty(),
    fullCollections: { bare: 0, proxy: 0 },
    bigBytes: 0,
    smallBytes: 0,
  };
  const middle = { bare: env.bare, proxy: env.proxy } as const;
  /** Runs `task`, returning its result and the CPU time the relay process spent meanwhile. */
  const withCpu = async <T>(mode: Mode, task: () => Promise<T>): Promise<[T, number]> => {
    if (mode === 'direct') return [await task(), Number.NaN];
    const before = await middle[mode].call<number>('cpu');
    const result = await task();
    return [result, (await middle[mode].call<number>('cpu')) - before];
  };
  const collections = async (): Promise<Record<'bare' | 'proxy', number>> => {
    const count = (m: 'bare' | 'proxy'): Promise<number> =>
      middle[m].call<Record<string, { count: number }>>('gc').then((g) => g[MAJOR_GC]?.count ?? 0);
    const [bare, proxy] = await Promise.all([count('bare'), count('proxy')]);
    return { bare, proxy };
  };
  const collectionsBefore = await collections();
  // Each case is timed in a block of its own, after `warmups` repetitions of its own that are not
  // recorded (a fresh relay settles over its first 100-200 MB: JIT, young generation, TCP windows). Interleaved cases showed another case's deferred work in a
  // window: a relay's collections and buffer sweeping after a 20 MB FETCH landed in the small FETCHes
  // timed right after it, by as much as 5-10 % either way depending on which relay ran them.
  // Within a block the modes rotate, so that drift on a shared machine hits all of them alike.
  const block = async (run: (mode: Mode, rep: number) => Promise<void>): Promise<void> => {
    for (let rep = 0; rep < o.warmups + o.reps; rep++) {
      for (const mode of modes.map((_, i) => modes[(i + rep) % modes.length] as Mode)) await run(mode, rep);
    }
  };
  await block(async (mode, rep) => {
    const [b, cb] = await withCpu(mode, () => fetchAll(big[mode]!));
    if (rep < o.warmups) return;
    out.cpuBig[mode].push(cb / 1000 / (b.bytes / 1e6));
    out.bigBytes = b.bytes;
    out.bigMBps[mode].push(b.bytes / 1e6 / b.seconds);
  });
  await block(async (mode, rep) => {
    const [s, cs] = await withCpu(mode, () => fetchAll(small[mode]!, SMALL_FETCHES));
    if (rep < o.warmups) return;
    out.cpuSmall[mode].push(cs / 1000 / ((SMALL_FETCHES * s.bytes) / 1e6));
    out.smallBytes = s.bytes;
    out.smallMBps[mode].push((SMALL_FETCHES * s.bytes) / 1e6 / s.seconds);
    out.smallMsgs[mode].push((SMALL_FETCHES * o.smallCount) / s.seconds);
  });
  await block(async (mode, rep) => {
    const [seconds, cm] = await withCpu(mode, () => sendMail(smtp[mode]!, message));
    if (rep < o.warmups) return;
    out.cpuSmtp[mode].push(cm / 1000 / (message.length / 1e6));
    out.smtpMBps[mode].push(message.length / 1e6 / seconds);
  });
  const collectionsAfter = await collections();
  out.fullCollections = {
    bare: collectionsAfter.bare - collectionsBefore.bare,
    proxy: collectionsAfter.proxy - collectionsBefore.proxy,
  };
  for (const c of [...Object.values(big), ...Object.values(small), ...Object.values(smtp)]) c?.close();
  return out;
}

const pooled = (rounds: LegSamples[], key: keyof LegSamples, mode: Mode): number[] =>
  rounds.flatMap((r) => (r[key] as Samples)[mode]);

function legRows(label: string, rounds: LegSamples[], o: ThroughputOptions): Row[] {
  const n = rounds.length * o.reps;
  /** MB/s: medians over every repetition; each round's ratio is the geometric mean of its paired ones. */
  const speed = (name: string, key: keyof LegSamples, unit = 'MB/s', verdict = true): Row => {
    const perRound = rounds.map((r) => {
      const x = r[key] as Samples;
      return ratioEstimate(x.proxy.map((p, i) => p / (x.bare[i] as number))).ratio;
    });
    const e = ratioEstimate(perRound);
    return {
      benchmark: 'throughput',
      metric: `${name}${label}`,
      unit,
      direct: median(pooled(rounds, key, 'direct')),
      bare: median(pooled(rounds, key, 'bare')),
      proxy: median(pooled(rounds, key, 'proxy')),
      ...(verdict ? judgeRatio('proxy/bare', e) : { ratio: e.ratio, target: '' }),
    };
  };
  /**
   * Relay CPU per MB. The mean is what a CPU-bound relay's capacity follows (collections and slow
   * transfers included): each round's ratio is bare mean / proxy mean, i.e. the throughput ratio a
   * CPU-bound relay would reach, and that is the target. The least over all rounds is the floor, the
   * relay's own code when nothing else ran: shown without a verdict.
   */
  const cpu = (name: string, key: keyof LegSamples, stat: 'best' | 'mean'): Row => {
    const bare = pooled(rounds, key, 'bare');
    const proxy = pooled(rounds, key, 'proxy');
    const base = {
      benchmark: 'throughput',
      metric: `relay CPU (${stat} of ${n}), ${name}${label}`,
      unit: 'ms/MB',
    };
    if (stat === 'best') {
      const b = Math.min(...bare);
      const p = Math.min(...proxy);
      return { ...base, bare: b, proxy: p, ratio: b / p, target: 'floor, bare/proxy' };
    }
    const perRound = rounds.map((r) => {
      const x = r[key] as Samples;
      return mean(x.bare) / mean(x.proxy);
    });
    return {
      ...base,
      bare: mean(bare),
      proxy: mean(proxy),
      ...judgeRatio('bare/proxy', ratioEstimate(perRound)),
    };
  };
  const first = rounds[0];
  const sum = (m: 'bare' | 'proxy'): number => rounds.reduce((a, r) => a + r.fullCollections[m], 0);
  return [
    speed(`IMAP FETCH 1×${((first?.bigBytes ?? 0) / 1e6).toFixed(0)} MB`, 'bigMBps'),
    speed(
      `IMAP FETCH ${o.smallCount} small (${((first?.smallBytes ?? 0) / 1e6).toFixed(1)} MB)`,
      'smallMBps',
    ),
    speed(`IMAP FETCH ${o.smallCount} small msgs`, 'smallMsgs', 'msg/s', false),
    speed(`SMTP DATA ${(o.smtpBytes / 1e6).toFixed(0)} MB`, 'smtpMBps'),
    cpu('IMAP 20 MB', 'cpuBig', 'best'),
    cpu('IMAP small', 'cpuSmall', 'best'),
    cpu('SMTP 10 MB', 'cpuSmtp', 'best'),
    cpu('IMAP 20 MB', 'cpuBig', 'mean'),
    cpu('IMAP small', 'cpuSmall', 'mean'),
    cpu('SMTP 10 MB', 'cpuSmtp', 'mean'),
    {
      benchmark: 'throughput',
      metric: `full collections in the relays${label}`,
      unit: 'count',
      bare: sum('bare'),
      proxy: sum('proxy'),
      target: 'same GC regime in both',
    },
  ];
}

/**
 * Both client legs (TLS, then clear text: the relays' cost without the client's TLS) in every round;
 * rounds after the first start with fresh relay processes (same flags).
 */
export async function runThroughput(env: Env, o: ThroughputOptions): Promise<{ rows: Row[]; raw: unknown }> {
  const message = Buffer.concat([makeMessage('smtp bench', o.smtpBytes), Buffer.from('.\r\n')]);
  const rounds: Record<ClientLeg, LegSamples[]> = { tls: [], clear: [] };
  for (let round = 0; round < o.rounds; round++) {
    if (round > 0) await env.restartMiddle(env.middleFlags);
    for (const clientLeg of ['tls', 'clear'] as const) {
      rounds[clientLeg].push(await measureLeg(env, legOf(env, clientLeg), o, message));
    }
  }
  return {
    rows: [...legRows('', rounds.tls, o), ...legRows(', clear', rounds.clear, o)],
    raw: { rounds, reps: o.reps, smtpBytes: message.length, middleFlags: env.middleFlags },
  };
}

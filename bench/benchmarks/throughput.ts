/**
 * (1) Throughput: one persistent, logged-in connection per mode; the timed part is one FETCH (or one
 * SMTP transaction) from the command to its final reply. Modes are interleaved within each repetition
 * (in rotating order) so that drift on a shared machine hits all three alike.
 */
import { performance } from 'node:perf_hooks';
import { Conn, MODES, imapLogin, imapTagged, smtpLogin, smtpReply, type Mode } from '../lib/client.js';
import type { Env } from '../lib/env.js';
import { makeMessage } from '../lib/messages.js';
import { mean, median, type Row } from '../lib/report.js';

export interface ThroughputOptions {
  reps: number;
  /** The client's leg to the bare relay and the proxy: TLS (the default) or clear text (no direct mode). */
  clientLeg?: 'tls' | 'clear';
  smtpBytes: number;
  bigBytes: number;
  smallCount: number;
}

type Samples = Record<Mode, number[]>;
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

export function legOf(env: Env, clientLeg: 'tls' | 'clear'): Leg {
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

/** Median MB/s per mode; the ratio is the median of the per-repetition proxy/bare ratios (paired, so a
 * burst of load from elsewhere on the machine skews one pair rather than one column). */
function rows(name: string, mbps: Samples, extra: Partial<Row> = {}): Row {
  const pairs = mbps.proxy.map((p, i) => p / (mbps.bare[i] as number));
  const ratio = median(pairs);
  return {
    benchmark: 'throughput',
    metric: name,
    unit: 'MB/s',
    direct: median(mbps.direct),
    bare: median(mbps.bare),
    proxy: median(mbps.proxy),
    ratio,
    target: 'ratio ≥ 1.0',
    pass: ratio >= 1.0,
    ...extra,
  };
}

export async function runThroughput(env: Env, o: ThroughputOptions): Promise<{ rows: Row[]; raw: unknown }> {
  const message = Buffer.concat([makeMessage('smtp bench', o.smtpBytes), Buffer.from('.\r\n')]);
  const leg = legOf(env, o.clientLeg ?? 'tls');
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
  const bigMBps = empty();
  const smallMBps = empty();
  const smallMsgs = empty();
  const smtpMBps = empty();
  /** CPU µs of the relay process per MB moved (bare and proxy only). */
  const cpuBig = empty();
  const cpuSmall = empty();
  const cpuSmtp = empty();
  const middle = { bare: env.bare, proxy: env.proxy } as const;
  /** Runs `task`, returning its result and the CPU time the relay process spent meanwhile. */
  const withCpu = async <T>(mode: Mode, task: () => Promise<T>): Promise<[T, number]> => {
    if (mode === 'direct') return [await task(), Number.NaN];
    const before = await middle[mode].call<number>('cpu');
    const result = await task();
    return [result, (await middle[mode].call<number>('cpu')) - before];
  };
  let bigBytes = 0;
  let smallBytes = 0;
  // Repetition 0 is a warm-up (JIT, TLS buffers, TCP windows) and is not recorded.
  for (let rep = 0; rep <= o.reps; rep++) {
    const order = modes.map((_, i) => modes[(i + rep) % modes.length] as Mode);
    for (const mode of order) {
      const [b, cb] = await withCpu(mode, () => fetchAll(big[mode]!));
      const [s, cs] = await withCpu(mode, () => fetchAll(small[mode]!, SMALL_FETCHES));
      const [seconds, cm] = await withCpu(mode, () => sendMail(smtp[mode]!, message));
      if (rep === 0) continue;
      cpuBig[mode].push(cb / 1000 / (b.bytes / 1e6));
      cpuSmall[mode].push(cs / 1000 / ((SMALL_FETCHES * s.bytes) / 1e6));
      cpuSmtp[mode].push(cm / 1000 / (message.length / 1e6));
      bigBytes = b.bytes;
      smallBytes = s.bytes;
      bigMBps[mode].push(b.bytes / 1e6 / b.seconds);
      smallMBps[mode].push((SMALL_FETCHES * s.bytes) / 1e6 / s.seconds);
      smallMsgs[mode].push((SMALL_FETCHES * o.smallCount) / s.seconds);
      smtpMBps[mode].push(message.length / 1e6 / seconds);
    }
  }
  for (const c of [...Object.values(big), ...Object.values(small), ...Object.values(smtp)]) c?.close();
  const msgsRow = rows(`IMAP FETCH ${o.smallCount} small msgs${leg.label}`, smallMsgs, {
    unit: 'msg/s',
    target: '',
    pass: undefined,
  });
  /**
   * Relay CPU per MB, two ways. The mean over all repetitions is what a CPU-bound relay's capacity
   * follows (collections and slow transfers included): the target. The least is the floor, the
   * relay's own code when nothing else ran; it is shown without a verdict, because two identical bare
   * relays (`--aa`) differ in it by 3-5 % (one standard deviation, up to 10 %) from run to run here,
   * as much as any gap looked for.
   * Ratio = bare/proxy, i.e. the throughput ratio a CPU-bound relay would reach.
   */
  const cpuRow = (name: string, x: Samples, stat: 'best' | 'mean'): Row => {
    const pick = stat === 'best' ? (xs: number[]) => Math.min(...xs) : mean;
    const bare = pick(x.bare);
    const proxy = pick(x.proxy);
    return {
      benchmark: 'throughput',
      metric: `relay CPU (${stat} of ${o.reps}), ${name}${leg.label}`,
      unit: 'ms/MB',
      bare,
      proxy,
      ratio: bare / proxy,
      ...(stat === 'mean'
        ? { target: 'bare/proxy ≥ 1.0', pass: bare / proxy >= 1.0 }
        : { target: 'floor (A/A: ±3–5 %)' }),
    };
  };
  return {
    rows: [
      rows(`IMAP FETCH 1×${(bigBytes / 1e6).toFixed(0)} MB${leg.label}`, bigMBps),
      rows(`IMAP FETCH ${o.smallCount} small (${(smallBytes / 1e6).toFixed(1)} MB)${leg.label}`, smallMBps),
      msgsRow,
      rows(`SMTP DATA ${(message.length / 1e6).toFixed(0)} MB${leg.label}`, smtpMBps),
      cpuRow('IMAP 20 MB', cpuBig, 'best'),
      cpuRow('IMAP small', cpuSmall, 'best'),
      cpuRow('SMTP 10 MB', cpuSmtp, 'best'),
      cpuRow('IMAP 20 MB', cpuBig, 'mean'),
      cpuRow('IMAP small', cpuSmall, 'mean'),
      cpuRow('SMTP 10 MB', cpuSmtp, 'mean'),
    ],
    raw: {
      clientLeg: o.clientLeg ?? 'tls',
      cpuBig,
      cpuSmall,
      cpuSmtp,
      reps: o.reps,
      bigBytes,
      smallBytes,
      smtpBytes: message.length,
      bigMBps,
      smallMBps,
      smallMsgs,
      smtpMBps,
    },
  };
}

/**
 * (1) Throughput: one persistent, logged-in connection per mode; the timed part is one FETCH (or one
 * SMTP transaction) from the command to its final reply. Modes are interleaved within each repetition
 * (in rotating order) so that drift on a shared machine hits all three alike.
 */
import { performance } from 'node:perf_hooks';
import { Conn, MODES, imapLogin, imapTagged, smtpLogin, smtpReply, type Mode } from '../lib/client.js';
import type { Env } from '../lib/env.js';
import { makeMessage } from '../lib/messages.js';
import { median, type Row } from '../lib/report.js';

export interface ThroughputOptions {
  reps: number;
  smtpBytes: number;
  bigBytes: number;
  smallCount: number;
}

type Samples = Record<Mode, number[]>;
/** FETCHes of the small mailbox per timed sample. */
const SMALL_FETCHES = 5;

async function imapSession(env: Env, mode: Mode, mailbox: string): Promise<Conn> {
  const conn = await Conn.open(env.imap[mode], env.ca);
  await imapLogin(conn, mode, env.warm[0]!);
  conn.write(`S1 SELECT ${mailbox}\r\n`);
  await imapTagged(conn, 'S1');
  return conn;
}

let tagNo = 0;
/**
 * Seconds and bytes for `times` FETCHes of the whole selected mailbox, one after the other (a FETCH
 * of 1,000 small messages takes ~10 ms here, too short a window to time alone on a busy machine).
 */
async function fetchAll(conn: Conn, times = 1): Promise<{ seconds: number; bytes: number }> {
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

async function sendMail(conn: Conn, data: Buffer): Promise<number> {
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
    target: 'ratio ≥ 0.95',
    pass: ratio >= 0.95,
    ...extra,
  };
}

export async function runThroughput(env: Env, o: ThroughputOptions): Promise<{ rows: Row[]; raw: unknown }> {
  const message = Buffer.concat([makeMessage('smtp bench', o.smtpBytes), Buffer.from('.\r\n')]);
  const big: Partial<Record<Mode, Conn>> = {};
  const small: Partial<Record<Mode, Conn>> = {};
  const smtp: Partial<Record<Mode, Conn>> = {};
  for (const mode of MODES) {
    big[mode] = await imapSession(env, mode, 'BIG');
    small[mode] = await imapSession(env, mode, 'SMALL');
    const s = await Conn.open(env.smtp[mode], env.ca);
    await smtpLogin(s, mode, env.warm[0]!);
    smtp[mode] = s;
  }
  const empty = (): Samples => ({ direct: [], bare: [], proxy: [] });
  const bigMBps = empty();
  const smallMBps = empty();
  const smallMsgs = empty();
  const smtpMBps = empty();
  let bigBytes = 0;
  let smallBytes = 0;
  // Repetition 0 is a warm-up (JIT, TLS buffers, TCP windows) and is not recorded.
  for (let rep = 0; rep <= o.reps; rep++) {
    const order = MODES.map((_, i) => MODES[(i + rep) % MODES.length] as Mode);
    for (const mode of order) {
      const b = await fetchAll(big[mode]!);
      const s = await fetchAll(small[mode]!, SMALL_FETCHES);
      const seconds = await sendMail(smtp[mode]!, message);
      if (rep === 0) continue;
      bigBytes = b.bytes;
      smallBytes = s.bytes;
      bigMBps[mode].push(b.bytes / 1e6 / b.seconds);
      smallMBps[mode].push((SMALL_FETCHES * s.bytes) / 1e6 / s.seconds);
      smallMsgs[mode].push((SMALL_FETCHES * o.smallCount) / s.seconds);
      smtpMBps[mode].push(message.length / 1e6 / seconds);
    }
  }
  for (const c of [...Object.values(big), ...Object.values(small), ...Object.values(smtp)]) c?.close();
  const msgsRow = rows(`IMAP FETCH ${o.smallCount} small msgs`, smallMsgs, {
    unit: 'msg/s',
    target: '',
    pass: undefined,
  });
  return {
    rows: [
      rows(`IMAP FETCH 1×${(bigBytes / 1e6).toFixed(0)} MB`, bigMBps),
      rows(`IMAP FETCH ${o.smallCount} small (${(smallBytes / 1e6).toFixed(1)} MB)`, smallMBps),
      msgsRow,
      rows(`SMTP DATA ${(message.length / 1e6).toFixed(0)} MB`, smtpMBps),
    ],
    raw: {
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

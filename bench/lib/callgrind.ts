/**
 * Instruction counts of a benchmark child running under callgrind (`Child` with `callgrindDir`).
 * CPU time per MB on a shared two-core VM moves by ±10 % from run to run, more than a few-percent gap
 * between two relays; the number of instructions executed does not move with the load, so it can
 * settle which of two relays does more work per byte. No hardware counters are needed.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Starts counting afresh. */
export async function zeroCounts(pid: number): Promise<void> {
  await run('callgrind_control', ['--zero', String(pid)]);
}

export interface CallgrindDump {
  /** Instructions the main thread executed since the last zero (the event loop: the relay itself). */
  instructions: number;
  /** Instructions all threads executed (V8's background compiler and GC threads too). */
  allThreads: number;
  /** Of `instructions`, those spent copying short reads (see `shortReadCopies`). */
  shortReadCopies: number;
}

/** Whether valgrind's callgrind and its control program are installed. */
export async function callgrindAvailable(): Promise<boolean> {
  try {
    await run('valgrind', ['--version']);
    await run('callgrind_control', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes a dump of what was counted since the last zero and returns its totals. `keep: false` removes
 * the dump files once read (a dump per thread per transfer adds up).
 */
export async function dumpCounts(pid: number, dir: string, keep = true): Promise<CallgrindDump> {
  const before = new Set(readdirSync(dir));
  await run('callgrind_control', ['--dump', String(pid)]);
  for (let i = 0; i < 100; i++) {
    // With --separate-threads every thread has its file: <role>.<pid>.<part>-<thread>.
    const fresh = readdirSync(dir).filter((f) => !before.has(f) && f.includes(`.${pid}.`));
    const counts = fresh.map((f) => {
      const text = readFileSync(join(dir, f), 'utf8');
      const summary = /^summary: (\d+)/m.exec(text);
      // `totals:` is the last line: the file is whole.
      return summary && /^totals: /m.test(text) ? Number(summary[1]) : undefined;
    });
    const main = fresh.findIndex((f) => f.endsWith('-01'));
    if (main >= 0 && counts.every((c) => c !== undefined)) {
      const copies = shortReadCopies(readDump(join(dir, fresh[main]!)));
      if (!keep) for (const f of fresh) rmSync(join(dir, f), { force: true });
      return {
        instructions: counts[main]!,
        allThreads: counts.reduce<number>((a, c) => a + c!, 0),
        shortReadCopies: copies,
      };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no callgrind dump from ${pid} in ${dir}`);
}

/** A callgrind dump read back: instructions per function (self) and per call edge (inclusive). */
export interface DumpProfile {
  total: number;
  self: Map<string, number>;
  /** `caller\tcallee` → instructions spent in the callee (and below) on calls from that caller. */
  calls: Map<string, number>;
}

/** Parses the callgrind format (name compression included; one event, Ir). */
export function readDump(file: string): DumpProfile {
  const names = new Map<string, string>();
  const named = (spec: string): string => {
    // "(12) name" defines id 12, "(12)" refers back to it.
    const m = /^\((\d+)\)(?: (.*))?$/.exec(spec);
    if (!m) return spec;
    if (m[2] !== undefined) names.set(m[1]!, m[2]);
    return names.get(m[1]!) ?? spec;
  };
  const self = new Map<string, number>();
  const calls = new Map<string, number>();
  let fn = '';
  let callee: string | undefined;
  let callCost = false;
  let total = 0;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('fn=')) {
      fn = named(line.slice(3));
      continue;
    }
    if (line.startsWith('cfn=')) {
      callee = named(line.slice(4));
      continue;
    }
    if (line.startsWith('calls=')) {
      callCost = true;
      continue;
    }
    if (!/^[\d+*-]/.test(line)) continue;
    const cost = Number(line.split(' ')[1] ?? 0);
    if (callCost && callee !== undefined) {
      const key = `${fn}\t${callee}`;
      calls.set(key, (calls.get(key) ?? 0) + cost);
      callCost = false;
    } else {
      self.set(fn, (self.get(fn) ?? 0) + cost);
      total += cost;
    }
  }
  return { total, self, calls };
}

/**
 * Instructions Node spent copying reads that came back shorter than their 64 KiB buffer: it moves
 * the bytes into a new, zero-filled buffer of the exact size. How many reads are short depends on
 * timing (how much the TCP window let in), which under valgrind is not the relay's doing: strace
 * on the native relays shows the same reads in both.
 */
export function shortReadCopies(p: DumpProfile): number {
  let sum = 0;
  for (const [key, cost] of p.calls) {
    const [caller, callee] = key.split('\t') as [string, string];
    if (!caller.includes('EmitToJSStreamListener::OnStreamRead')) continue;
    if (callee.includes('memcpy') || callee.includes('NewBackingStore')) sum += cost;
  }
  return sum;
}

/**
 * `npm run bench [-- options]`: the benchmark suite of issue 8. Every figure is measured side by side
 * against two references in the same run: direct (XOAUTH2 straight to the upstream) and a bare TLS
 * relay. Prints one table and writes bench/results/<timestamp>.json.
 *
 *   --only <list>     throughput,latency,netdelay,sessions,storm,scaleout,graph,instructions
 *                     (comma-separated; default: all but instructions, which needs valgrind and
 *                     takes about ten minutes)
 *   --delay <ms>      netdelay: one-way delay between the upstream and everyone else (default 10)
 *   --quick           fewer repetitions, N=500 sessions (a smoke run in well under a minute)
 *   --sessions <n>    number of idle sessions (default 5000; env BENCH_SESSIONS too)
 *   --experiment <x>  try a proposed fix in the proxy child (repeatable; see lib/experiments.ts)
 *   --aa              throughput only: the "proxy" column is a second bare relay (an A/A run, to see
 *                     how far two identical relays differ on this machine)
 *   --profile         write --cpu-prof profiles of the proxy and bare relay children to
 *                     bench/results/profiles/<timestamp>/
 */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runGraph } from './benchmarks/graph.js';
import { runInstructions } from './benchmarks/instructions.js';
import { runLatency } from './benchmarks/latency.js';
import { runNetDelay } from './benchmarks/netdelay.js';
import { runSessions } from './benchmarks/sessions.js';
import { runScaleOut } from './benchmarks/scale-out.js';
import { runStorm } from './benchmarks/storm.js';
import { runThroughput } from './benchmarks/throughput.js';
import { heapFloorFlags, startEnv } from './lib/env.js';
import { EXPERIMENTS, type Experiment } from './lib/experiments.js';
import { renderTable, writeJson, type Row } from './lib/report.js';

const BENCHMARKS = [
  'throughput',
  'latency',
  'netdelay',
  'storm',
  'scaleout',
  'sessions',
  'graph',
  'instructions',
] as const;
/** What runs without --only: the instruction counts are asked for by name. */
const DEFAULT_BENCHMARKS = BENCHMARKS.filter((b) => b !== 'instructions');
type Benchmark = (typeof BENCHMARKS)[number];
const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
/** The whole run gives up after this (every loop inside is bounded too). */
const RUN_DEADLINE_MS = 15 * 60_000;
/** What the instruction counts add to it: everything under valgrind runs about 50 times slower. */
const INSTRUCTIONS_DEADLINE_MS = 20 * 60_000;

function openFileLimit(): number {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
  } catch {
    return Number.NaN;
  }
}

/**
 * The relay CPU comparison runs both relays with the same old-generation floor (see
 * `heapFloorFlags`); everything else, the memory benchmark above all, at Node's defaults as shipped.
 */
function middleFlagsFor(name: Benchmark | undefined): string[] {
  return name === 'throughput' ? heapFloorFlags() : [];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
      sessions: { type: 'string' },
      delay: { type: 'string' },
      profile: { type: 'boolean', default: false },
      aa: { type: 'boolean', default: false },
      experiment: { type: 'string', multiple: true },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(
      'usage: npm run bench -- [--only throughput,latency,netdelay,sessions,storm,scaleout,graph,instructions] [--quick] [--sessions N] [--delay MS] [--profile] [--aa] [--experiment NAME]',
    );
    return;
  }
  const selected = (values.only?.split(',').map((s) => s.trim()) ?? [...DEFAULT_BENCHMARKS]) as Benchmark[];
  for (const s of selected) if (!BENCHMARKS.includes(s)) throw new Error(`unknown benchmark ${s}`);
  const quick = values.quick === true;
  const aa = values.aa === true;
  if (aa && selected.some((s) => s !== 'throughput')) throw new Error('--aa goes with --only throughput');
  const experiments = (values.experiment ?? []) as Experiment[];
  for (const e of experiments) if (!EXPERIMENTS.includes(e)) throw new Error(`unknown experiment ${e}`);
  const limit = openFileLimit();
  let sessions = Number(values.sessions ?? process.env.BENCH_SESSIONS ?? (quick ? 500 : 5000));
  // The proxy holds two sockets per session, plus listeners, the store and the runtime's own.
  const maxByFiles = Math.floor((limit - 200) / 2);
  if (Number.isFinite(maxByFiles) && sessions > maxByFiles) {
    console.error(`open-file limit ${limit}: sessions capped at ${maxByFiles} (raise it with ulimit -n)`);
    sessions = maxByFiles;
  }
  /** The transfers the throughput and instruction benchmarks time (and the mailboxes they need). */
  const transfers = { bigBytes: 20e6, smallCount: 1000, smallBytes: 4096, smtpBytes: 10e6 };
  const params = {
    throughput: { rounds: quick ? 3 : 5, reps: quick ? 3 : 8, warmups: quick ? 2 : 5, ...transfers },
    latency: { iterations: quick ? 60 : 300 },
    netdelay: { iterations: quick ? 40 : 150, delayMs: Number(values.delay ?? 10) },
    sessions: { n: sessions, concurrency: 100 },
    storm: { clients: 200, accounts: 20, reps: quick ? 2 : 3 },
    scaleout: { clients: 200, instances: 3, fetches: quick ? 3 : 9 },
    graph: { reps: quick ? 3 : 7 },
    instructions: { warmups: quick ? 3 : 10, samples: quick ? 3 : 5, ...transfers },
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const cpuProfDir = values.profile ? join(RESULTS_DIR, 'profiles', stamp) : undefined;
  const machine = {
    date: new Date().toISOString(),
    nproc: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    openFileLimit: limit,
    loadAverageAtStart: loadavg(),
  };
  console.error(
    `xoauth-proxy bench: ${selected.join(', ')}${quick ? ' (quick)' : ''}${experiments.length ? ` [experiments: ${experiments.join(', ')}]` : ''} on ${machine.nproc}× ${machine.cpu}, Node ${machine.node}, ulimit -n ${limit}`,
  );

  const deadlineMs = RUN_DEADLINE_MS + (selected.includes('instructions') ? INSTRUCTIONS_DEADLINE_MS : 0);
  const deadline = setTimeout(() => {
    console.error(`bench: over ${deadlineMs / 60_000} minutes, giving up`);
    process.exit(1);
  }, deadlineMs);
  deadline.unref();

  const env = await startEnv({
    mailboxes: params.throughput,
    stormSets: [
      ...(selected.includes('storm')
        ? [...Array.from({ length: params.storm.reps }, (_, r) => `a${r + 1}`), 'b']
        : []),
      ...(selected.includes('scaleout') ? ['s1', 'p1'] : []),
    ],
    stormAccounts: params.storm.accounts,
    ...(cpuProfDir ? { cpuProfDir } : {}),
    experiments,
    aa,
    middleFlags: middleFlagsFor(selected[0]),
  });
  const rows: Row[] = [];
  const raw: Record<string, unknown> = {};
  const started = Date.now();
  try {
    for (const name of selected) {
      const t0 = Date.now();
      console.error(`running ${name} ...`);
      const flags = middleFlagsFor(name);
      if (flags.join(' ') !== env.middleFlags.join(' ')) await env.restartMiddle(flags);
      const result =
        name === 'throughput'
          ? await runThroughput(env, params.throughput)
          : name === 'latency'
            ? await runLatency(env, params.latency)
            : name === 'netdelay'
              ? await runNetDelay(env, params.netdelay)
              : name === 'sessions'
                ? await runSessions(env, params.sessions)
                : name === 'scaleout'
                  ? await runScaleOut(env, params.scaleout)
                  : name === 'graph'
                    ? await runGraph(params.graph)
                    : name === 'instructions'
                      ? await runInstructions(params.instructions)
                      : await runStorm(env, params.storm);
      rows.push(...result.rows);
      raw[name] = result.raw;
      console.error(`  ${name} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    await env.stop();
  }
  const table = renderTable(rows);
  console.log(table);
  console.log(
    `load average (1/5/15 min) at start ${machine.loadAverageAtStart.map((l) => l.toFixed(1)).join(' ')}, at end ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}; ratios are paired within one run`,
  );
  const file = writeJson(RESULTS_DIR, {
    machine,
    quick,
    experiments,
    aa,
    params,
    durationSeconds: (Date.now() - started) / 1000,
    loadAverageAtEnd: loadavg(),
    rows,
    table,
    raw,
    ...(cpuProfDir ? { cpuProfDir } : {}),
  });
  console.error(`results: ${file}${cpuProfDir ? `\nprofiles: ${cpuProfDir}` : ''}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

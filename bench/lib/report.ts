/** Figures, the one table, and the JSON file. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import jstat from 'jstat';

export interface Row {
  benchmark: string;
  metric: string;
  unit: string;
  direct?: number | undefined;
  bare?: number | undefined;
  proxy?: number | undefined;
  /** Proxy relative to the bare relay (or as the metric says). */
  ratio?: number | undefined;
  target?: string;
  pass?: boolean | undefined;
}

export function mean(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  return xs.reduce((a, x) => a + x, 0) / xs.length;
}

/** A ratio estimated from repeated paired measurements, with its two-sided 95 % interval. */
export interface RatioEstimate {
  ratio: number;
  low: number;
  high: number;
  /** How many ratios it rests on. */
  n: number;
}

/**
 * The geometric mean of `ratios` and its 95 % interval (Student's t on their logarithms): ratios of
 * paired measurements spread multiplicatively, and on the log scale 0.8 and 1.25 are equally far
 * from 1. One ratio has no interval (NaN).
 */
export function ratioEstimate(ratios: number[]): RatioEstimate {
  const logs = ratios.map((r) => Math.log(r));
  const n = logs.length;
  const m = mean(logs);
  if (n < 2) return { ratio: Math.exp(m), low: Number.NaN, high: Number.NaN, n };
  const sd = Math.sqrt(logs.reduce((a, x) => a + (x - m) ** 2, 0) / (n - 1));
  const half = (jstat.studentt.inv(0.975, n - 1) * sd) / Math.sqrt(n);
  return { ratio: Math.exp(m), low: Math.exp(m - half), high: Math.exp(m + half), n };
}

/**
 * The target "`what` ≥ 1.0" judged on an estimate: failed only when its whole 95 % interval lies below
 * 1.0 (shown worse than the reference, not merely measured a little below it); with a single ratio,
 * that ratio decides.
 */
export function judgeRatio(what: string, e: RatioEstimate): Pick<Row, 'ratio' | 'target' | 'pass'> {
  const single = Number.isNaN(e.high);
  const interval = single ? 'one round' : `95 %: ${e.low.toFixed(2)}–${e.high.toFixed(2)}, ${e.n} rounds`;
  return {
    ratio: e.ratio,
    target: `${what} ≥ 1.0 (${interval})`,
    pass: single ? e.ratio >= 1.0 : e.high >= 1.0,
  };
}

export function median(xs: number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

function fmt(x: number | undefined): string {
  if (x === undefined || Number.isNaN(x)) return '—';
  if (Math.abs(x) >= 1000) return x.toFixed(0);
  if (Math.abs(x) >= 100) return x.toFixed(1);
  return x.toFixed(2);
}

export function renderTable(rows: Row[]): string {
  const head = ['benchmark', 'metric', 'unit', 'direct', 'bare relay', 'proxy', 'ratio', 'target', 'ok'];
  const body = rows.map((r) => [
    r.benchmark,
    r.metric,
    r.unit,
    fmt(r.direct),
    fmt(r.bare),
    fmt(r.proxy),
    r.ratio === undefined ? '' : fmt(r.ratio),
    r.target ?? '',
    r.pass === undefined ? '' : r.pass ? 'yes' : 'NO',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] as string).length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => (i >= 3 && i <= 6 ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

export function writeJson(dir: string, data: unknown): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

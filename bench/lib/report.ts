/** Figures, the one table, and the JSON file. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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

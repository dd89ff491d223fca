/**
 * The statistics behind the throughput benchmark's verdicts: a ratio from paired rounds as a geometric
 * mean with a Student's t interval on the log scale, and "≥ 1.0" failing only when the whole interval
 * lies below 1.0.
 */
import { describe, expect, it } from 'vitest';
import { judgeRatio, ratioEstimate } from '../../../bench/lib/report.js';

describe('ratioEstimate', () => {
  it('is the geometric mean, with a t interval on the logarithms', () => {
    const e = ratioEstimate([1.1, 0.9, 1.0]);
    const logs = [Math.log(1.1), Math.log(0.9), 0];
    const m = (logs[0]! + logs[1]!) / 3;
    const sd = Math.sqrt(logs.reduce((a, x) => a + (x - m) ** 2, 0) / 2);
    // t(0.975, 2 degrees of freedom) = 4.3027
    const half = (4.3027 * sd) / Math.sqrt(3);
    expect(e.n).toBe(3);
    expect(e.ratio).toBeCloseTo(Math.exp(m), 10);
    expect(e.low).toBeCloseTo(Math.exp(m - half), 3);
    expect(e.high).toBeCloseTo(Math.exp(m + half), 3);
  });

  it('treats 0.5 and 2 as equally far from 1', () => {
    const e = ratioEstimate([0.5, 2]);
    expect(e.ratio).toBeCloseTo(1, 10);
    expect(e.low * e.high).toBeCloseTo(1, 10);
  });

  it('has no interval for a single ratio, and none of width for equal ones', () => {
    const one = ratioEstimate([1.2]);
    expect(one.ratio).toBeCloseTo(1.2, 10);
    expect(one.low).toBeNaN();
    expect(one.high).toBeNaN();
    const same = ratioEstimate([0.97, 0.97, 0.97, 0.97]);
    expect(same.low).toBeCloseTo(0.97, 10);
    expect(same.high).toBeCloseTo(0.97, 10);
  });
});

describe('judgeRatio', () => {
  it('passes an interval that reaches 1.0 though the estimate is below it', () => {
    const verdict = judgeRatio('proxy/bare', ratioEstimate([0.95, 1.02, 0.97, 1.01, 0.96]));
    expect(verdict.ratio).toBeLessThan(1);
    expect(verdict.pass).toBe(true);
    expect(verdict.target).toMatch(/^proxy\/bare ≥ 1\.0 \(95 %: 0\.9\d–1\.0\d, 5 rounds\)$/);
  });

  it('fails when the whole interval lies below 1.0', () => {
    const verdict = judgeRatio('bare/proxy', ratioEstimate([0.9, 0.92, 0.91, 0.93, 0.9]));
    expect(verdict.pass).toBe(false);
  });

  it('decides on the ratio itself when there is one round', () => {
    expect(judgeRatio('x', ratioEstimate([0.99])).pass).toBe(false);
    expect(judgeRatio('x', ratioEstimate([1.0])).pass).toBe(true);
    expect(judgeRatio('x', ratioEstimate([1.0])).target).toBe('x ≥ 1.0 (one round)');
  });
});

import { describe, expect, it } from 'vitest';
import { Pop3LineFramer, type Frame } from '../../../src/proxy/pop3/framer.js';

function drain(framer: Pop3LineFramer): Frame[] {
  const out: Frame[] = [];
  for (let i = 0; i < 100; i++) {
    const f = framer.next();
    if (!f) break;
    out.push(f);
    if (f.type === 'too-long') break;
  }
  return out;
}

const lines = (frames: Frame[]): string[] =>
  frames.map((f) => (f.type === 'line' ? f.line.toString('utf8') : '<too-long>'));

describe('POP3 line framer', () => {
  it('splits CRLF and bare LF lines and keeps an incomplete tail', () => {
    const f = new Pop3LineFramer(100);
    f.push(Buffer.from('CAPA\r\nUSER bob\nPASS a b '));
    expect(lines(drain(f))).toEqual(['CAPA', 'USER bob']);
    expect(f.buffered).toBe(9);
    f.push(Buffer.from(' c\r\n'));
    expect(lines(drain(f))).toEqual(['PASS a b  c']);
    expect(f.buffered).toBe(0);
  });

  it('is incremental: one byte at a time gives the same lines', () => {
    const f = new Pop3LineFramer(100);
    const out: string[] = [];
    for (const b of Buffer.from('USER x\r\nPASS y\r\n')) {
      f.push(Buffer.from([b]));
      out.push(...lines(drain(f)));
    }
    expect(out).toEqual(['USER x', 'PASS y']);
  });

  it('takeRemainder hands back unread bytes in order and empties the framer', () => {
    const f = new Pop3LineFramer(100);
    f.push(Buffer.from('PASS x\r\nSTAT\r\nRETR 1\r\nLI'));
    expect(lines([f.next() as Frame])).toEqual(['PASS x']);
    expect(f.takeRemainder().toString()).toBe('STAT\r\nRETR 1\r\nLI');
    expect(f.buffered).toBe(0);
    expect(f.next()).toBeUndefined();
  });

  describe('line length limit (CRLF not counted)', () => {
    const max = 10;
    const atCap = 'A'.repeat(max);
    const over = 'A'.repeat(max + 1);

    it('at the cap passes, one over fails', () => {
      const ok = new Pop3LineFramer(max);
      ok.push(Buffer.from(`${atCap}\r\n`));
      expect(lines(drain(ok))).toEqual([atCap]);
      const bad = new Pop3LineFramer(max);
      bad.push(Buffer.from(`${over}\r\n`));
      expect(lines(drain(bad))).toEqual(['<too-long>']);
    });

    it.each([1, 5, 10, 11, 12])('across a chunk boundary at byte %i', (cut) => {
      const ok = new Pop3LineFramer(max);
      const okData = Buffer.from(`${atCap}\r\n`);
      ok.push(okData.subarray(0, cut));
      const first = drain(ok);
      ok.push(okData.subarray(cut));
      expect(lines([...first, ...drain(ok)])).toEqual([atCap]);

      const bad = new Pop3LineFramer(max);
      const badData = Buffer.from(`${over}\r\n`);
      bad.push(badData.subarray(0, cut));
      const early = drain(bad);
      bad.push(badData.subarray(cut));
      expect(lines([...early, ...drain(bad)])).toContain('<too-long>');
    });

    it('max+1 bytes ending in CR wait for the LF; without CR they fail at once (no unbounded buffering)', () => {
      const waiting = new Pop3LineFramer(max);
      waiting.push(Buffer.from(`${atCap}\r`));
      expect(waiting.next()).toBeUndefined();
      waiting.push(Buffer.from('\n'));
      expect(lines(drain(waiting))).toEqual([atCap]);

      const flood = new Pop3LineFramer(max);
      flood.push(Buffer.from(over));
      expect(flood.next()).toEqual({ type: 'too-long' });
    });

    it('stays broken and drops everything once the limit is broken', () => {
      const f = new Pop3LineFramer(max);
      f.push(Buffer.from(`${over}\r\nCAPA\r\n`));
      expect(f.next()).toEqual({ type: 'too-long' });
      f.push(Buffer.from('QUIT\r\n'));
      expect(f.next()).toEqual({ type: 'too-long' });
      expect(f.buffered).toBe(0);
    });
  });
});

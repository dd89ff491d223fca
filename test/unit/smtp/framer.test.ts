import { describe, expect, it } from 'vitest';
import { SmtpLineFramer, type Frame } from '../../../src/proxy/smtp/framer.js';

function drain(f: SmtpLineFramer): Frame[] {
  const out: Frame[] = [];
  for (let i = 0; i < 1000; i++) {
    const fr = f.next();
    if (fr === undefined) break;
    out.push(fr);
    if (fr.type === 'too-long') break;
  }
  return out;
}
const lines = (frames: Frame[]): string[] =>
  frames.map((f) => (f.type === 'line' ? f.line.toString('latin1') : '<too-long>'));

describe('SmtpLineFramer', () => {
  it('splits CRLF lines and keeps an incomplete tail', () => {
    const f = new SmtpLineFramer(100);
    f.push(Buffer.from('EHLO a\r\nNOOP\r\nQU'));
    expect(lines(drain(f))).toEqual(['EHLO a', 'NOOP']);
    expect(f.buffered).toBe(2);
    f.push(Buffer.from('IT\r\n'));
    expect(lines(drain(f))).toEqual(['QUIT']);
  });

  it('accepts bare LF and keeps a CR split from its LF across chunks', () => {
    const f = new SmtpLineFramer(100);
    f.push(Buffer.from('NOOP\nRSET\r'));
    expect(lines(drain(f))).toEqual(['NOOP']);
    f.push(Buffer.from('\n'));
    expect(lines(drain(f))).toEqual(['RSET']);
  });

  it('hands back the unread remainder byte-exact, one line at a time', () => {
    const f = new SmtpLineFramer(100);
    const tail = Buffer.from([0x4d, 0x41, 0x49, 0x4c, 0x0d, 0x0a, 0xff, 0x00, 0x80]);
    f.push(Buffer.concat([Buffer.from('AUTH PLAIN x\r\n'), tail]));
    expect(lines([f.next()!])).toEqual(['AUTH PLAIN x']);
    expect(f.takeRemainder().equals(tail)).toBe(true);
    expect(f.buffered).toBe(0);
  });

  it('line length: at the cap passes, one over fails (with and without CR, across chunks)', () => {
    const max = 10;
    const ok = new SmtpLineFramer(max);
    ok.push(Buffer.from('x'.repeat(max) + '\r'));
    expect(ok.next()).toBeUndefined();
    ok.push(Buffer.from('\n'));
    expect(lines(drain(ok))).toEqual(['x'.repeat(max)]);

    const over = new SmtpLineFramer(max);
    over.push(Buffer.from('x'.repeat(max + 1)));
    expect(lines(drain(over))).toEqual(['<too-long>']);

    const overWithCrlf = new SmtpLineFramer(max);
    overWithCrlf.push(Buffer.from('x'.repeat(max + 1) + '\r\n'));
    expect(lines(drain(overWithCrlf))).toEqual(['<too-long>']);

    const overSplit = new SmtpLineFramer(max);
    for (const ch of 'x'.repeat(max + 1)) overSplit.push(Buffer.from(ch));
    expect(lines(drain(overSplit))).toEqual(['<too-long>']);
  });

  it('stays broken after too-long and drops its buffer', () => {
    const f = new SmtpLineFramer(4);
    f.push(Buffer.from('toolong\r\nNOOP\r\n'));
    expect(f.next()).toEqual({ type: 'too-long' });
    expect(f.next()).toEqual({ type: 'too-long' });
    f.push(Buffer.from('NOOP\r\n'));
    expect(f.buffered).toBe(0);
  });
});

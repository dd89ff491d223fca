/**
 * The SMTP framer's content modes (Graph mode): DATA bodies end at CRLF.CRLF and are dot-unstuffed
 * byte-exactly however the bytes are chunked (RFC 5321 §4.5.2); BDAT chunks are exactly n bytes
 * (RFC 3030); the size limit drops content but still finds the end; nothing is scanned twice.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SmtpFramer, type Expect, type Frame } from '../../../src/proxy/smtp/framer.js';
import { splitAt } from '../../helpers/front-harness.js';

const RUNS = { numRuns: 400, interruptAfterTimeLimit: 10_000 };
const BIG = 1 << 30;

/** What a client sends for `body` (which ends in CRLF, or is empty): dots stuffed, then `.CRLF`. */
function stuff(body: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < body.length; i++) {
    const atLineStart = i === 0 || (body[i - 1] === 0x0a && body[i - 2] === 0x0d);
    if (atLineStart && body[i] === 0x2e) out.push(0x2e);
    out.push(body[i]!);
  }
  return Buffer.concat([Buffer.from(out), Buffer.from('.\r\n')]);
}

/** Pushes the chunks one by one, pulling frames of the expected kinds like the front does. */
function run(framer: SmtpFramer, chunks: Buffer[], expects: Expect[]): Frame[] {
  const frames: Frame[] = [];
  for (const chunk of chunks) {
    framer.push(chunk);
    for (let i = 0; i < 100 && frames.length < expects.length; i++) {
      const frame = framer.next(expects[frames.length]);
      if (frame === undefined) break;
      frames.push(frame);
    }
  }
  return frames;
}

/** Random message bytes rich in what matters: dots, CR, LF, CRLF.CRLF and its lookalikes. */
const bodyBytes = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        '\r\n',
        '.',
        '..',
        '\r',
        '\n',
        '\r\n.\r\n',
        '\r\n..\r\n',
        '\n.\n',
        '\r\n.\n',
        '.\r',
        'a',
      ),
      fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a).toString('latin1')),
    ),
    { maxLength: 40 },
  )
  .map((parts) => {
    const text = parts.join('');
    // A DATA body as the server receives it always ends in CRLF (the client adds one if needed).
    return Buffer.from(text.length === 0 || text.endsWith('\r\n') ? text : `${text}\r\n`, 'latin1');
  });

const cuts = fc.array(fc.nat(), { maxLength: 12 });

describe('SMTP framer, DATA', () => {
  it('unstuffed body equals the original, for any bytes and any chunking; what follows is a line', () => {
    fc.assert(
      fc.property(bodyBytes, cuts, (body, at) => {
        const wire = Buffer.concat([stuff(body), Buffer.from('QUIT\r\n')]);
        const framer = new SmtpFramer(1000);
        const frames = run(framer, splitAt(wire, at), [{ type: 'data', maxBytes: BIG }, { type: 'line' }]);
        expect(frames).toHaveLength(2);
        const [data, line] = frames;
        expect(data?.type).toBe('data');
        if (data?.type !== 'data') return;
        expect(data.tooLarge).toBe(false);
        expect(data.body.equals(body)).toBe(true);
        expect(line).toEqual({ type: 'line', line: Buffer.from('QUIT') });
      }),
      RUNS,
    );
  });

  it('over the limit: the body is dropped, its end still found, the next line intact', () => {
    fc.assert(
      fc.property(bodyBytes, cuts, fc.nat({ max: 50 }), (body, at, limit) => {
        fc.pre(body.length > limit);
        const wire = Buffer.concat([stuff(body), Buffer.from('RSET\r\n')]);
        const framer = new SmtpFramer(1000);
        const frames = run(framer, splitAt(wire, at), [{ type: 'data', maxBytes: limit }, { type: 'line' }]);
        expect(frames[0]).toEqual({ type: 'data', body: Buffer.alloc(0), tooLarge: true, overBudget: false });
        expect(frames[1]).toEqual({ type: 'line', line: Buffer.from('RSET') });
      }),
      RUNS,
    );
  });

  it('at the limit passes, one byte over is too large', () => {
    const body = Buffer.from('Subject: x\r\n\r\nhello\r\n');
    const at = new SmtpFramer(1000);
    at.push(stuff(body));
    expect(at.next({ type: 'data', maxBytes: body.length })).toEqual({
      type: 'data',
      body,
      tooLarge: false,
      overBudget: false,
    });
    const over = new SmtpFramer(1000);
    over.push(stuff(body));
    expect(over.next({ type: 'data', maxBytes: body.length - 1 })).toMatchObject({
      tooLarge: true,
      overBudget: false,
    });
  });

  it('lookalikes do not end the body: bare LF lines, .LF (its dot is stuffing), CR.CRLF; a lone . line does', () => {
    const framer = new SmtpFramer(1000);
    framer.push(Buffer.from('a\n.\nb\r\n.\nc\r.\r\nd\r\n..\r\n.\r\nNOOP\r\n', 'latin1'));
    const frame = framer.next({ type: 'data', maxBytes: BIG });
    expect(frame).toEqual({
      type: 'data',
      body: Buffer.from('a\n.\nb\r\n\nc\r.\r\nd\r\n.\r\n', 'latin1'),
      tooLarge: false,
      overBudget: false,
    });
    expect(framer.next()).toEqual({ type: 'line', line: Buffer.from('NOOP') });
  });

  it('an empty body, and a body of binary bytes with no line ending but the last', () => {
    const empty = new SmtpFramer(10);
    empty.push(Buffer.from('.\r\n'));
    expect(empty.next({ type: 'data', maxBytes: BIG })).toEqual({
      type: 'data',
      body: Buffer.alloc(0),
      tooLarge: false,
      overBudget: false,
    });
    const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from('\r\n')]);
    const binary = new SmtpFramer(10);
    binary.push(stuff(bytes));
    expect(binary.next({ type: 'data', maxBytes: BIG })).toEqual({
      type: 'data',
      body: bytes,
      tooLarge: false,
      overBudget: false,
    });
  });

  it('lines in the body have no line limit', () => {
    const body = Buffer.from(`${'x'.repeat(100_000)}\r\n`);
    const framer = new SmtpFramer(100);
    framer.push(stuff(body));
    expect(framer.next({ type: 'data', maxBytes: BIG })).toEqual({
      type: 'data',
      body,
      tooLarge: false,
      overBudget: false,
    });
  });

  it('a 20 MB body in 16 KB chunks is read in linear time', () => {
    const line = Buffer.from(`.${'y'.repeat(75)}\r\n`);
    const body = Buffer.concat(Array.from({ length: Math.ceil(20_000_000 / line.length) }, () => line));
    const wire = stuff(body);
    const framer = new SmtpFramer(1000);
    const started = performance.now();
    let frame: Frame | undefined;
    for (let i = 0; i < wire.length && frame === undefined; i += 16 * 1024) {
      framer.push(wire.subarray(i, i + 16 * 1024));
      frame = framer.next({ type: 'data', maxBytes: 35_000_000 });
    }
    const ms = performance.now() - started;
    expect(frame?.type === 'data' && frame.body.equals(body)).toBe(true);
    // Quadratic re-scanning of 1,200 chunks would take minutes; linear takes well under a second.
    expect(ms).toBeLessThan(5_000);
  });
});

describe('SMTP framer, BDAT', () => {
  it('takes exactly n bytes across any chunk boundaries, whatever they contain', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), cuts, (a, b, at) => {
        const first = Buffer.from(a);
        const second = Buffer.from(b);
        const wire = Buffer.concat([first, second, Buffer.from('BDAT 0 LAST\r\n')]);
        const framer = new SmtpFramer(1000);
        const frames = run(framer, splitAt(wire, at), [
          { type: 'bdat', size: first.length, keep: true },
          { type: 'bdat', size: second.length, keep: true },
          { type: 'line' },
        ]);
        expect(frames).toEqual([
          { type: 'bdat', chunk: first, size: first.length, overBudget: false },
          { type: 'bdat', chunk: second, size: second.length, overBudget: false },
          { type: 'line', line: Buffer.from('BDAT 0 LAST') },
        ]);
      }),
      RUNS,
    );
  });

  it('keep: false reads the bytes and drops them', () => {
    const framer = new SmtpFramer(1000);
    framer.push(Buffer.from('0123456789RSET\r\n'));
    expect(framer.next({ type: 'bdat', size: 10, keep: false })).toEqual({
      type: 'bdat',
      chunk: Buffer.alloc(0),
      size: 10,
      overBudget: false,
    });
    expect(framer.next()).toEqual({ type: 'line', line: Buffer.from('RSET') });
  });

  it('BDAT 0 is a frame at once, with no bytes', () => {
    const framer = new SmtpFramer(1000);
    expect(framer.next({ type: 'bdat', size: 0, keep: true })).toEqual({
      type: 'bdat',
      chunk: Buffer.alloc(0),
      size: 0,
      overBudget: false,
    });
  });

  it('lines in the transaction keep the line limit', () => {
    const framer = new SmtpFramer(10);
    framer.push(Buffer.from('MAIL FROM:<someone@example.com>\r\n'));
    expect(framer.next({ type: 'line' })).toEqual({ type: 'too-long' });
  });
});

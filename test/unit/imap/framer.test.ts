import { describe, expect, it } from 'vitest';
import { ImapFramer, type FramerEvent } from '../../../src/proxy/imap/framer.js';

const limits = {
  maxLineLength: 20,
  maxLiteralSize: 10,
  maxLiteralsPerCommand: 3,
  maxLiteralBytesPerCommand: 1000,
};

function run(input: (string | Buffer)[], l = limits): { events: FramerEvent[]; framer: ImapFramer } {
  const framer = new ImapFramer(l);
  const events: FramerEvent[] = [];
  for (const chunk of input) {
    framer.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, 'utf8'));
    for (let e = framer.next(); e; e = framer.next()) events.push(e);
  }
  return { events, framer };
}

/** Frames as readable text: lines joined, literals in <>. */
function show(events: FramerEvent[]): string[] {
  return events.map((e) => {
    if (e.type === 'continue') return `+${e.size}`;
    if (e.type === 'error') return `!${e.kind}`;
    return e.frame.parts
      .map((p) => p.line.toString() + (p.literal ? `<${p.literal.toString()}>` : ''))
      .join('|');
  });
}

const bytewise = (s: string): Buffer[] => [...Buffer.from(s)].map((b) => Buffer.from([b]));

describe('ImapFramer', () => {
  it('frames CRLF lines and accepts a bare LF', () => {
    expect(show(run(['a NOOP\r\nb NOOP\n']).events)).toEqual(['a NOOP', 'b NOOP']);
  });

  it('asks for a synchronizing literal and assembles the command around it', () => {
    expect(show(run(['a LOGIN {3}\r\n', 'joe {4}\r\n', 'pw\r\n\r\n']).events)).toEqual([
      '+3',
      '+4',
      'a LOGIN {3}<joe>| {4}<pw\r\n>|',
    ]);
  });

  it('does not ask for a LITERAL+ literal', () => {
    expect(show(run(['a LOGIN {3+}\r\njoe {2+}\r\npw\r\n']).events)).toEqual([
      'a LOGIN {3+}<joe>| {2+}<pw>|',
    ]);
  });

  it('gives the same events byte by byte', () => {
    const input = 'a LOGIN {3}\r\njoe {2+}\r\npw\r\nb NOOP\r\n';
    expect(show(run(bytewise(input)).events)).toEqual(show(run([input]).events));
  });

  describe('line length limit', () => {
    const atCap = `${'x'.repeat(20)}\r\n`;
    const overCap = `${'x'.repeat(21)}\r\n`;
    it('passes a line at the cap, in one chunk and byte by byte', () => {
      expect(show(run([atCap]).events)).toEqual(['x'.repeat(20)]);
      expect(show(run(bytewise(atCap)).events)).toEqual(['x'.repeat(20)]);
    });
    it('fails one byte over, in one chunk and byte by byte, before the line ends', () => {
      expect(show(run([overCap]).events)).toEqual(['!line-too-long']);
      expect(show(run(bytewise(overCap)).events)).toEqual(['!line-too-long']);
      // Without any line end: detected as soon as the buffer cannot be a legal line.
      expect(show(run(['x'.repeat(22)]).events)).toEqual(['!line-too-long']);
      expect(show(run(['x'.repeat(21)]).events)).toEqual([]); // may still be 20 bytes + CR
    });
    it('applies to each line of a command, not to literals', () => {
      expect(show(run([`a {10+}\r\n${'y'.repeat(10)}${'z'.repeat(20)}\r\n`]).events)).toEqual([
        `a {10+}<${'y'.repeat(10)}>|${'z'.repeat(20)}`,
      ]);
    });
  });

  describe('literal size limit', () => {
    it('passes a literal at the cap and fails one over', () => {
      expect(show(run(['a {10+}\r\n0123456789\r\n']).events)).toEqual(['a {10+}<0123456789>|']);
      expect(show(run(['a {11+}\r\n01234567890\r\n']).events)).toEqual(['!literal-too-large']);
      expect(show(run(bytewise('a {11}\r\n')).events)).toEqual(['!literal-too-large']);
    });
    it('refuses absurd sizes without parsing them as numbers', () => {
      expect(show(run(['a {99999999999}\r\n']).events)).toEqual(['a {99999999999}']);
      expect(show(run(['a {9999999999}\r\n']).events)).toEqual(['!literal-too-large']);
    });
  });

  it('limits the literal bytes of one command in total (at the cap passes, one over fails)', () => {
    const l = { ...limits, maxLiteralBytesPerCommand: 20 };
    expect(show(run([`a {10+}\r\n${'x'.repeat(10)} {10+}\r\n${'y'.repeat(10)}\r\n`], l).events)).toEqual([
      `a {10+}<${'x'.repeat(10)}>| {10+}<${'y'.repeat(10)}>|`,
    ]);
    expect(show(run([`a {10+}\r\n${'x'.repeat(10)} {10+}\r\n${'y'.repeat(10)} {1}\r\n`], l).events)).toEqual([
      '!command-too-large',
    ]);
    // The total is per command: the next command starts again from zero.
    expect(
      show(
        run(
          [`a {10+}\r\n${'x'.repeat(10)}\r\nb {10+}\r\n${'x'.repeat(10)} {10+}\r\n${'y'.repeat(10)}\r\n`],
          l,
        ).events,
      ),
    ).toHaveLength(2);
  });

  it('limits literals per command (at the cap passes, one over fails)', () => {
    expect(show(run(['a {0+}\r\n {0+}\r\n {0+}\r\n\r\n']).events)).toEqual(['a {0+}<>| {0+}<>| {0+}<>|']);
    expect(show(run(['a {0+}\r\n {0+}\r\n {0+}\r\n {0+}\r\n']).events)).toEqual(['!too-many-literals']);
  });

  it('stays dead after an error', () => {
    const { framer } = run([`${'x'.repeat(30)}\r\n`]);
    framer.push(Buffer.from('a NOOP\r\n'));
    expect(framer.next()).toBeUndefined();
  });

  it('hands back everything after the last complete frame, including a partial command', () => {
    const framer = new ImapFramer(limits);
    framer.push(Buffer.from('a LOGIN x y\r\nb SELECT {5+}\r\nIN'));
    expect(show([framer.next() as FramerEvent])).toEqual(['a LOGIN x y']);
    expect(framer.next()).toBeUndefined(); // b is incomplete
    expect(framer.takeRemainder().toString()).toBe('b SELECT {5+}\r\nIN');
    expect(framer.takeRemainder().length).toBe(0);
  });
});

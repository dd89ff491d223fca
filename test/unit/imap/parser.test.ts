import { describe, expect, it } from 'vitest';
import { ImapFramer, type Frame } from '../../../src/proxy/imap/framer.js';
import { parseCommand, saslResponse } from '../../../src/proxy/imap/parser.js';
import { frontLimits } from '../../../src/proxy/shared/limits.js';

function frame(input: string | Buffer): Frame {
  const f = new ImapFramer(frontLimits());
  f.push(Buffer.isBuffer(input) ? input : Buffer.from(input, 'utf8'));
  for (let e = f.next(); e; e = f.next()) if (e.type === 'frame') return e.frame;
  throw new Error('no frame');
}

const parse = (input: string | Buffer) => parseCommand(frame(input));

describe('parseCommand', () => {
  it('parses LOGIN with atoms', () => {
    expect(parse('a001 login joe secret\r\n')).toEqual({
      ok: true,
      command: {
        tag: 'a001',
        name: 'LOGIN',
        args: [
          { kind: 'atom', value: 'joe' },
          { kind: 'atom', value: 'secret' },
        ],
      },
    });
  });

  it('unescapes \\" and \\\\ in quoted strings, keeps UTF-8', () => {
    expect(parse('a LOGIN "joe@example.com" "p\\"ä\\\\ ✓"\r\n')).toMatchObject({
      ok: true,
      command: { args: [{ value: 'joe@example.com' }, { kind: 'string', value: 'p"ä\\ ✓' }] },
    });
  });

  it('takes literals ({n} and {n+}) as strings, bytes counted in UTF-8', () => {
    const pw = 'pä ss"\\✓';
    const n = Buffer.byteLength(pw);
    expect(parse(`a LOGIN {3}\r\njoe {${n}+}\r\n${pw}\r\n`)).toMatchObject({
      ok: true,
      command: {
        args: [
          { kind: 'string', value: 'joe' },
          { kind: 'string', value: pw },
        ],
      },
    });
  });

  it('parses ID lists and NIL', () => {
    expect(parse('a ID ("name" "imapflow" "version" {5+}\r\n1.2.3)\r\n')).toMatchObject({
      ok: true,
      command: {
        name: 'ID',
        args: [
          {
            kind: 'list',
            items: [
              { value: 'name' },
              { value: 'imapflow' },
              { value: 'version' },
              { kind: 'string', value: '1.2.3' },
            ],
          },
        ],
      },
    });
    expect(parse('a ID NIL\r\n')).toMatchObject({
      ok: true,
      command: { args: [{ kind: 'atom', value: 'NIL' }] },
    });
    expect(parse('a ID ()\r\n')).toMatchObject({
      ok: true,
      command: { args: [{ kind: 'list', items: [] }] },
    });
  });

  it.each([
    ['an invalid escape', 'a LOGIN "x\\y" z\r\n', 'a'],
    ['an unterminated string', 'a LOGIN "xy\r\n', 'a'],
    ['an unbalanced list', 'a ID ("x"\r\n', 'a'],
    ['a stray )', 'a ID x)\r\n', 'a'],
    ['a double space', 'a LOGIN  x y\r\n', 'a'],
    ['a trailing space', 'a NOOP \r\n', 'a'],
  ])('reports %s with the tag', (_name, input, tag) => {
    const r = parse(input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.tag).toBe(tag);
  });

  it.each([
    ['* NOOP\r\n'],
    ['+ NOOP\r\n'],
    ['"a" NOOP\r\n'],
    ['\r\n'],
    [`${'t'.repeat(65)} NOOP\r\n`],
    ['tä NOOP\r\n'],
  ])('refuses an invalid tag without echoing it: %j', (input) => {
    expect(parse(input)).toEqual({ ok: false, message: 'Invalid tag' });
  });

  it('reads SASL responses raw', () => {
    expect(saslResponse(frame('dGVzdA==\r\n'))).toEqual({ ok: true, text: 'dGVzdA==' });
    expect(saslResponse(frame('*\r\n'))).toEqual({ ok: true, text: '*' });
    expect(saslResponse(frame('x {1+}\r\ny\r\n'))).toEqual({ ok: false });
  });
});

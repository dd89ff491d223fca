/** The PROXY protocol header parser: v1 text, v2 binary, partial input, garbage and size caps. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_HEADER_LENGTH,
  V1_MAX_LENGTH,
  parseProxyHeader,
  type ProxyHeaderResult,
} from '../../../src/proxy/shared/proxy-protocol.js';

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header: command 0 LOCAL / 1 PROXY, family byte, address block, then TLVs. */
function v2(command: number, family: number, body: Buffer, version = 2): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = (version << 4) | command;
  fixed[1] = family;
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([SIGNATURE, fixed, body]);
}

function ipv4Body(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sport, 0);
  ports.writeUInt16BE(dport, 2);
  return Buffer.concat([Buffer.from(src), Buffer.from(dst), ports]);
}

function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

const parse = (text: string | Buffer): ProxyHeaderResult =>
  parseProxyHeader(typeof text === 'string' ? Buffer.from(text, 'latin1') : text);

describe('PROXY v1', () => {
  it('reads TCP4 and TCP6 source address and port', () => {
    const line = 'PROXY TCP4 192.0.2.7 198.51.100.1 56324 143\r\n';
    expect(parse(`${line}a1 CAPABILITY\r\n`)).toEqual({
      type: 'proxied',
      address: '192.0.2.7',
      port: 56324,
      length: line.length,
    });
    expect(parse('PROXY TCP6 2001:db8::7 2001:db8::1 4000 993\r\n')).toMatchObject({
      type: 'proxied',
      address: '2001:db8::7',
      port: 4000,
    });
  });

  it('UNKNOWN keeps the socket address, whatever follows it', () => {
    expect(parse('PROXY UNKNOWN\r\n')).toEqual({ type: 'local', length: 15 });
    expect(parse('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nx')).toEqual({ type: 'local', length: 35 });
  });

  it('waits for the rest of a partial line', () => {
    for (const part of [
      'P',
      'PROXY',
      'PROXY ',
      'PROXY TCP4 1.2.3.4 5.6.7.8 1 2',
      'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r',
    ]) {
      expect(parse(part)).toEqual({ type: 'need-more' });
    }
  });

  it('refuses malformed lines', () => {
    const bad = [
      'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n',
      'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n',
      'PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n',
      'PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n',
      'PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n',
      'PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n',
    ];
    for (const line of bad) expect(parse(line).type, line).toBe('error');
  });

  it('gives up on a line longer than 107 bytes without waiting for its end', () => {
    const long = `PROXY TCP6 ${'a'.repeat(V1_MAX_LENGTH)}`;
    expect(parse(long)).toMatchObject({ type: 'error', reason: expect.stringContaining('longer') });
    expect(parse(`PROXY UNKNOWN ${'x'.repeat(100)}\r\n`).type).toBe('error');
  });
});

describe('PROXY v2', () => {
  it('reads TCP over IPv4', () => {
    const header = v2(1, 0x11, ipv4Body([203, 0, 113, 9], [10, 0, 0, 1], 40000, 143));
    expect(parse(Buffer.concat([header, Buffer.from('a1 NOOP\r\n')]))).toEqual({
      type: 'proxied',
      address: '203.0.113.9',
      port: 40000,
      length: header.length,
    });
  });

  it('reads TCP over IPv6, compressed like a socket address; IPv4-mapped as dotted', () => {
    const body = (src: string): Buffer => {
      const ports = Buffer.alloc(4);
      ports.writeUInt16BE(5555, 0);
      ports.writeUInt16BE(993, 2);
      return Buffer.concat([Buffer.from(src, 'hex'), Buffer.alloc(16), ports]);
    };
    expect(parse(v2(1, 0x21, body('20010db8000000000000000000000007')))).toMatchObject({
      type: 'proxied',
      address: '2001:db8::7',
      port: 5555,
    });
    expect(parse(v2(1, 0x21, body('fe800000000000000001000000000001')))).toMatchObject({
      address: 'fe80::1:0:0:1',
    });
    expect(parse(v2(1, 0x21, body('00000000000000000000ffffc0000201')))).toMatchObject({
      address: '::ffff:192.0.2.1',
    });
    expect(parse(v2(1, 0x21, body('20010db8000100020003000400050006')))).toMatchObject({
      address: '2001:db8:1:2:3:4:5:6',
    });
  });

  it('LOCAL (a health check) and non-TCP families keep the socket address', () => {
    expect(parse(v2(0, 0x00, Buffer.alloc(0)))).toEqual({ type: 'local', length: 16 });
    expect(parse(v2(0, 0x11, ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)))).toEqual({
      type: 'local',
      length: 28,
    });
    expect(parse(v2(1, 0x12, ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)))).toEqual({
      type: 'local',
      length: 28,
    });
    expect(parse(v2(1, 0x31, Buffer.alloc(216)))).toEqual({ type: 'local', length: 232 });
  });

  it('skips TLVs after the addresses', () => {
    const body = Buffer.concat([
      ipv4Body([198, 51, 100, 20], [10, 0, 0, 1], 1234, 587),
      tlv(0x01, Buffer.from('imap')),
      tlv(0x04, Buffer.alloc(0)),
      tlv(0x20, Buffer.from([0x01, 0, 0, 0, 0])),
    ]);
    const header = v2(1, 0x11, body);
    expect(parse(Buffer.concat([header, Buffer.from('EHLO x\r\n')]))).toEqual({
      type: 'proxied',
      address: '198.51.100.20',
      port: 1234,
      length: header.length,
    });
  });

  it('waits for the announced length', () => {
    const header = v2(1, 0x11, ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    for (let n = 1; n < header.length; n += 1) {
      expect(parse(header.subarray(0, n))).toEqual({ type: 'need-more' });
    }
  });

  it('refuses a wrong version, an unknown command, truncated addresses and an oversize length', () => {
    const addresses = ipv4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    expect(parse(v2(1, 0x11, addresses, 1)).type).toBe('error');
    expect(parse(v2(2, 0x11, addresses)).type).toBe('error');
    expect(parse(v2(1, 0x11, addresses.subarray(0, 8))).type).toBe('error');
    expect(parse(v2(1, 0x21, Buffer.alloc(20))).type).toBe('error');
    const oversize = v2(1, 0x11, Buffer.alloc(MAX_HEADER_LENGTH));
    // Refused from the fixed part alone: no need to buffer what it announces.
    expect(parse(oversize.subarray(0, 16))).toMatchObject({
      type: 'error',
      reason: expect.stringContaining('announces'),
    });
  });
});

describe('not a PROXY header', () => {
  it('refuses anything else at its first wrong byte', () => {
    expect(parse('a1 LOGIN user pass\r\n').type).toBe('error');
    expect(parse('EHLO client\r\n').type).toBe('error');
    expect(parse('proxy TCP4').type).toBe('error');
    expect(parse(Buffer.from([0x16, 0x03, 0x01])).type).toBe('error');
    expect(
      parse(Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0b])).type,
    ).toBe('error');
    expect(parse('')).toEqual({ type: 'need-more' });
  });
});

/**
 * Feeds `input` the way a socket reader does, the bytes so far after each piece, and returns the
 * first answer that is not need-more.
 */
function feed(input: Buffer, cuts: number[]): ProxyHeaderResult {
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  for (const point of [...points, input.length]) {
    const result = parseProxyHeader(input.subarray(0, point));
    if (result.type !== 'need-more') return result;
  }
  return { type: 'need-more' };
}

describe('delivery in pieces', () => {
  const samples: Buffer[] = [
    Buffer.from('PROXY TCP4 192.0.2.7 198.51.100.1 56324 143\r\na1 NOOP\r\n'),
    Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 4000 993\r\n'),
    Buffer.from('PROXY UNKNOWN\r\n'),
    Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n'),
    Buffer.concat([
      v2(
        1,
        0x11,
        Buffer.concat([ipv4Body([203, 0, 113, 9], [10, 0, 0, 1], 40000, 143), tlv(1, Buffer.from('h2'))]),
      ),
      Buffer.from('a1 NOOP\r\n'),
    ]),
    v2(0, 0x00, Buffer.alloc(0)),
    Buffer.from('a1 LOGIN x y\r\n'),
  ];

  it('byte by byte gives the same answer as all at once', () => {
    for (const sample of samples) {
      const cuts = Array.from({ length: sample.length }, (_, i) => i);
      expect(feed(sample, cuts)).toEqual(parseProxyHeader(sample));
    }
  });

  it('split anywhere gives the same answer (property)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...samples), fc.array(fc.nat(200), { maxLength: 8 }), (sample, cuts) => {
        expect(feed(sample, cuts)).toEqual(parseProxyHeader(sample));
      }),
    );
  });

  it('arbitrary bytes never throw, and a whole answer never claims more than it was given', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc
            .uint8Array({ maxLength: 120 })
            .map((b) => Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, 0, 12]), b])),
          fc.string({ maxLength: 120 }).map((s) => Buffer.from(`PROXY ${s}`)),
        ),
        (bytes) => {
          const input = Buffer.from(bytes);
          const result = parseProxyHeader(input);
          if (result.type === 'proxied' || result.type === 'local') {
            expect(result.length).toBeLessThanOrEqual(input.length);
          }
        },
      ),
    );
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addressKey, headerMailboxes, planRecipients } from '../../../src/graph/recipients.js';

const msg = (headers: string[], body = 'Hello\r\n'): Buffer =>
  Buffer.from(`${headers.join('\r\n')}\r\n\r\n${body}`, 'utf8');

/** The header block of a message as text (up to the blank line). */
const headerBlock = (data: Buffer): string => {
  const text = data.toString('utf8');
  return text.slice(0, text.indexOf('\r\n\r\n') + 2);
};

describe('headerMailboxes', () => {
  it('reads To, Cc and Bcc across folded lines, groups and encoded words, any case of the name', () => {
    const data = msg([
      'From: me@example.com',
      'tO: "Doe, Jane" <jane@example.com>,',
      '\tbob@example.com',
      'CC: =?utf-8?q?J=C3=B6rg?= <jorg@example.com>, team: ann@example.com, "x@y" <cat@example.com>;',
      'bcc: undisclosed-recipients:;',
      'Subject: To: fake@example.com',
    ]);
    expect(headerMailboxes(data)).toEqual([
      { kind: 'to', name: 'Doe, Jane', address: 'jane@example.com' },
      { kind: 'to', name: '', address: 'bob@example.com' },
      { kind: 'cc', name: 'Jörg', address: 'jorg@example.com' },
      { kind: 'cc', name: '', address: 'ann@example.com' },
      { kind: 'cc', name: 'x@y', address: 'cat@example.com' },
    ]);
  });

  it('does not take an address hidden in an encoded word at its word', () => {
    const data = msg([
      'To: =?utf-8?B?' + Buffer.from('evil@attacker.example').toString('base64') + '?= <a@example.com>',
    ]);
    expect(headerMailboxes(data).map((m) => m.address)).toEqual(['a@example.com']);
  });

  it('stops at the blank line: a To: in the body is not a header', () => {
    const data = msg(['To: a@example.com'], 'To: b@example.com\r\n');
    expect(headerMailboxes(data).map((m) => m.address)).toEqual(['a@example.com']);
  });
});

describe('addressKey', () => {
  it('ignores case and compares IDN domains in ASCII form', () => {
    expect(addressKey('User@Bücher.Example')).toBe(addressKey('user@xn--bcher-kva.example'));
    expect(addressKey('A@B.example')).toBe('a@b.example');
  });
});

describe('planRecipients', () => {
  it('leaves the bytes alone when headers and envelope agree', () => {
    const data = msg(['From: me@example.com', 'To: A@Example.com', 'Cc: b@example.com']);
    const plan = planRecipients(data, ['a@example.com', 'B@EXAMPLE.COM']);
    expect(plan.mime.equals(data)).toBe(true);
    expect(plan.added).toEqual([]);
    expect(plan.headerOnly).toEqual([]);
    expect(plan.envelope.map((r) => r.kind)).toEqual(['to', 'cc']);
  });

  it('adds envelope-only recipients as a Bcc header at the end of the header block, body untouched', () => {
    const data = msg(['From: me@example.com', 'To: a@example.com', 'Subject: hi'], 'line\r\n\r\nmore\r\n');
    const plan = planRecipients(data, ['a@example.com', 'hidden@example.com', 'h2@example.com']);
    expect(plan.added).toEqual(['hidden@example.com', 'h2@example.com']);
    expect(plan.mime.toString('utf8')).toBe(
      'From: me@example.com\r\nTo: a@example.com\r\nSubject: hi\r\nBcc: hidden@example.com,\r\n h2@example.com\r\n\r\nline\r\n\r\nmore\r\n',
    );
    expect(
      headerMailboxes(plan.mime)
        .filter((m) => m.kind === 'bcc')
        .map((m) => m.address),
    ).toEqual(['hidden@example.com', 'h2@example.com']);
  });

  it('extends an existing (folded) Bcc header instead of adding a second one', () => {
    const data = msg(['To: a@example.com', 'BCC: x@example.com,', ' y@example.com', 'Subject: s']);
    const plan = planRecipients(data, ['a@example.com', 'x@example.com', 'y@example.com', 'z@example.com']);
    expect(headerBlock(plan.mime)).toBe(
      'To: a@example.com\r\nBCC: x@example.com,\r\n y@example.com,\r\n z@example.com\r\nSubject: s\r\n',
    );
  });

  it('fills an empty Bcc header', () => {
    const plan = planRecipients(msg(['To: a@example.com', 'Bcc:']), ['a@example.com', 'z@example.com']);
    expect(headerBlock(plan.mime)).toBe('To: a@example.com\r\nBcc: z@example.com\r\n');
  });

  it('handles a message without a body, and one without headers', () => {
    const noBody = Buffer.from('To: a@example.com\r\n');
    expect(planRecipients(noBody, ['a@example.com', 'b@example.com']).mime.toString()).toBe(
      'To: a@example.com\r\nBcc: b@example.com\r\n',
    );
    const noHeaders = Buffer.from('\r\nbody\r\n');
    expect(planRecipients(noHeaders, ['b@example.com']).mime.toString()).toBe(
      'Bcc: b@example.com\r\n\r\nbody\r\n',
    );
  });

  it('reads a message with bare LF line ends the same way, and answers in its line ends', () => {
    const data = Buffer.from(
      'From: me@example.com\nTo: a@example.com,\n b@example.com\n\nTo: body@example.com\n',
    );
    const plan = planRecipients(data, ['a@example.com', 'b@example.com', 'c@example.com']);
    expect(plan.added).toEqual(['c@example.com']);
    expect(plan.mime.toString()).toBe(
      'From: me@example.com\nTo: a@example.com,\n b@example.com\nBcc: c@example.com\n\nTo: body@example.com\n',
    );
  });

  it('ends the header block at the first line that is no header field', () => {
    const data = Buffer.from('To: a@example.com\r\nthis is body text: oops\r\nCc: x@example.com\r\n');
    const plan = planRecipients(data, ['a@example.com', 'c@example.com']);
    expect(plan.headerOnly).toEqual([]);
    expect(plan.mime.toString()).toBe(
      'To: a@example.com\r\nBcc: c@example.com\r\nthis is body text: oops\r\nCc: x@example.com\r\n',
    );
  });

  it('reports header recipients the envelope lacks (MIME would deliver to them)', () => {
    const data = msg(['To: a@example.com, other@example.com', 'Cc: grp: c@example.com;']);
    const plan = planRecipients(data, ['a@example.com']);
    expect(plan.headerOnly).toEqual(['other@example.com', 'c@example.com']);
  });

  it('matches an SMTPUTF8 header address in raw UTF-8 against the envelope', () => {
    const data = msg(['To: Jörg <jörg@bücher.example>']);
    const plan = planRecipients(data, ['jörg@xn--bcher-kva.example']);
    expect(plan.added).toEqual([]);
    expect(plan.headerOnly).toEqual([]);
  });

  it('property: every envelope recipient is named in the resulting headers; only the Bcc field changes', () => {
    const local = fc.stringMatching(/^[a-z0-9]{1,8}$/);
    const addr = fc.tuple(local, fc.constantFrom('example.com', 'Example.ORG')).map(([l, d]) => `${l}@${d}`);
    fc.assert(
      fc.property(
        fc.uniqueArray(addr, { maxLength: 6, selector: addressKey }),
        fc.array(addr, { minLength: 1, maxLength: 6 }),
        (inTo, envelope) => {
          const data = msg(
            [
              'From: me@example.com',
              ...(inTo.length > 0 ? [`To: ${inTo.join(',\r\n ')}`] : []),
              'Subject: s',
            ],
            'b\r\n',
          );
          const plan = planRecipients(data, envelope);
          const named = new Set(headerMailboxes(plan.mime).map((m) => addressKey(m.address)));
          for (const r of envelope) expect(named.has(addressKey(r))).toBe(true);
          const withoutBcc = plan.mime.toString('utf8').replace(/^Bcc: [^]*?\r\n(?! )/m, '');
          expect(withoutBcc).toBe(data.toString('utf8'));
        },
      ),
      { numRuns: 200 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import { planRecipients } from '../../../src/graph/recipients.js';
import { buildStructuredMessage } from '../../../src/graph/structured.js';

const lines = (...l: string[]) => Buffer.from(l.join('\r\n'), 'utf8');

async function build(data: Buffer, envelope: string[], mailbox = 'me@example.com') {
  return buildStructuredMessage(data, planRecipients(data, envelope), mailbox);
}

describe('buildStructuredMessage', () => {
  it('splits the envelope by the header that named each recipient; the rest are Bcc; header-only ones are dropped', async () => {
    const data = lines(
      'From: Me <ME@example.com>',
      'To: "Bob B" <bob@example.org>, eve@example.org',
      'Cc: carol@example.org',
      'Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=',
      '',
      'hi',
      '',
    );
    const { message, attachments } = await build(data, [
      'carol@example.org',
      'BOB@example.org',
      'dan@example.org',
    ]);
    expect(message).toEqual({
      subject: 'Grüße',
      body: { contentType: 'text', content: 'hi\n' },
      toRecipients: [{ emailAddress: { address: 'BOB@example.org', name: 'Bob B' } }],
      ccRecipients: [{ emailAddress: { address: 'carol@example.org' } }],
      bccRecipients: [{ emailAddress: { address: 'dan@example.org' } }],
    });
    expect(attachments).toEqual([]);
  });

  it('keeps Reply-To, importance, a From other than the mailbox, and at most five X- headers', async () => {
    const data = lines(
      'From: Boss <boss@example.com>',
      'Reply-To: desk@example.com',
      'To: bob@example.org',
      'X-Priority: 5',
      ...[1, 2, 3, 4, 5, 6].map((i) => `X-Custom-${i}: v${i}`),
      'X-MS-Exchange-Organization-SCL: -1',
      'X-Folded: one',
      ' two',
      'Subject: s',
      '',
      'x',
      '',
    );
    const { message } = await build(data, ['bob@example.org']);
    expect(message.from).toEqual({ emailAddress: { address: 'boss@example.com', name: 'Boss' } });
    expect(message.replyTo).toEqual([{ emailAddress: { address: 'desk@example.com' } }]);
    expect(message.importance).toBe('low');
    expect(message.internetMessageHeaders).toEqual([
      { name: 'X-Priority', value: '5' },
      ...[1, 2, 3, 4].map((i) => ({ name: `X-Custom-${i}`, value: `v${i}` })),
    ]);
  });

  it('prefers HTML with cid: links kept; inline parts are inline attachments, others not', async () => {
    const data = lines(
      'From: me@example.com',
      'To: bob@example.org',
      'MIME-Version: 1.0',
      'Content-Type: multipart/related; boundary=R',
      '',
      '--R',
      'Content-Type: text/html; charset=utf-8',
      '',
      '<img src="cid:pic1">',
      '--R',
      'Content-Type: image/png',
      'Content-ID: <pic1>',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from([1, 2, 3]).toString('base64'),
      '--R',
      'Content-Type: text/calendar; method=REQUEST',
      '',
      'BEGIN:VCALENDAR',
      '--R--',
      '',
    );
    const { message, attachments } = await build(data, ['bob@example.org']);
    expect(message.body).toEqual({ contentType: 'html', content: '<img src="cid:pic1">' });
    expect(message.from).toBeUndefined();
    expect(attachments.map((a) => [a.name, a.contentType, a.isInline, a.contentId])).toEqual([
      ['attachment-1', 'image/png', true, 'pic1'],
      ['invite-2.ics', 'text/calendar', false, undefined],
    ]);
    expect(attachments[0]!.content).toEqual(Buffer.from([1, 2, 3]));
  });
});

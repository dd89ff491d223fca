/** The sink's Received: stripping decides what "byte-exact" means for SMTP, so it gets its own checks. */
import { describe, expect, it } from 'vitest';
import { stripFirstReceived } from '../helpers/smtp-sink.js';

describe('stripFirstReceived', () => {
  it('drops one folded Received: field and keeps every byte after it', () => {
    const rest = 'Received: from client (keep me)\r\nSubject: x\r\n\r\nbody\r\n';
    const raw = Buffer.from(`Received: from a\r\n\tby b\r\n (c)\r\n${rest}`);
    expect(stripFirstReceived(raw).toString()).toBe(rest);
  });

  it('leaves a message without a leading Received: alone', () => {
    const raw = Buffer.from('Subject: x\r\nReceived: later\r\n\r\nbody\r\n');
    expect(stripFirstReceived(raw)).toBe(raw);
  });

  it('handles a header without a following line', () => {
    expect(stripFirstReceived(Buffer.from('Received: only')).length).toBe(0);
  });
});

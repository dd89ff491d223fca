/** Benchmark mail: a big message shaped like a base64 attachment, and many small text messages. */

export interface MailboxSpec {
  bigBytes: number;
  smallCount: number;
  smallBytes: number;
}

function header(subject: string): string {
  return (
    `From: Bob <bob@example.com>\r\nTo: Alice <alice@example.com>\r\nSubject: ${subject}\r\n` +
    `Message-ID: <${subject.replace(/\W/g, '')}@bench.test>\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`
  );
}

/** `bytes` long (give or take a line), 76-character lines + CRLF, never a line starting with '.'. */
export function makeMessage(subject: string, bytes: number): Buffer {
  const line = `${'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.repeat(2).slice(0, 76)}\r\n`;
  const head = header(subject);
  const lines = Math.max(1, Math.ceil((bytes - head.length) / line.length));
  return Buffer.from(head + line.repeat(lines), 'latin1');
}

export function makeMailboxes(spec: MailboxSpec): Record<string, Buffer[]> {
  const small: Buffer[] = [];
  for (let i = 0; i < spec.smallCount; i++) small.push(makeMessage(`small ${i + 1}`, spec.smallBytes));
  return { BIG: [makeMessage('big', spec.bigBytes)], SMALL: small };
}

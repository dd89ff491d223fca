/**
 * The "provider's outbound side" for end-to-end tests: Dovecot submission relays every accepted message
 * here, and the sink keeps its envelope and raw bytes so a test can check exactly what was accepted.
 * Plain SMTP on 127.0.0.1, port 0, no AUTH and no STARTTLS (Dovecot's relay leg is not what we test).
 */
import { once } from 'node:events';
import { SMTPServer } from 'smtp-server';

export interface SinkMessage {
  mailFrom: string;
  rcptTo: string[];
  /** The DATA bytes as received (dot-unstuffed, without the final `.`), including Dovecot's Received:. */
  raw: Buffer;
  /** `raw` after the first header field when that is the relay's `Received:` (folded lines included). */
  afterReceived: Buffer;
}

export interface SmtpSink {
  readonly host: string;
  readonly port: number;
  readonly messages: SinkMessage[];
  /** Resolves with the `count`-th message (1-based) once it has arrived. */
  waitForMessages(count: number, timeoutMs?: number): Promise<SinkMessage[]>;
  close(): Promise<void>;
}

/**
 * Drops a leading `Received:` header field (with its folded continuation lines). Dovecot submission
 * prepends exactly one; everything after it must be the client's bytes.
 */
export function stripFirstReceived(raw: Buffer): Buffer {
  if (!/^received:/i.test(raw.subarray(0, 9).toString('latin1'))) return raw;
  let pos = 0;
  for (;;) {
    const eol = raw.indexOf('\n', pos);
    if (eol < 0) return Buffer.alloc(0);
    pos = eol + 1;
    const next = raw[pos];
    // A continuation line starts with whitespace (RFC 5322 folding).
    if (next !== 0x20 && next !== 0x09) return raw.subarray(pos);
  }
}

export async function startSmtpSink(): Promise<SmtpSink> {
  const messages: SinkMessage[] = [];
  const waiters = new Set<() => void>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    // Large test messages; the default 60 s idle timeout is fine.
    size: 0,
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', callback);
      stream.on('end', () => {
        const raw = Buffer.concat(chunks);
        const env = session.envelope;
        messages.push({
          mailFrom: env.mailFrom === false ? '' : env.mailFrom.address,
          rcptTo: env.rcptTo.map((r) => r.address),
          raw,
          afterReceived: stripFirstReceived(raw),
        });
        for (const wake of [...waiters]) wake();
        callback();
      });
    },
  });
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  const address = server.server.address();
  if (address === null || typeof address === 'string') throw new Error('sink has no port');

  return {
    host: '127.0.0.1',
    port: address.port,
    messages,
    waitForMessages(count, timeoutMs = 20_000) {
      if (messages.length >= count) return Promise.resolve(messages.slice(0, count));
      return new Promise((resolve, reject) => {
        const wake = (): void => {
          if (messages.length < count) return;
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(messages.slice(0, count));
        };
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(new Error(`SMTP sink: ${messages.length} of ${count} messages after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(wake);
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

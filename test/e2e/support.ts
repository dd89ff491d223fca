/**
 * Small pieces shared by the end-to-end files: a raw line-oriented client for transcripts a library
 * would hide (XOAUTH2 error continuations), test messages, and printing server logs when a test fails.
 */
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect as netConnect, type Socket } from 'node:net';
import { beforeEach } from 'vitest';

/** Registers a beforeEach that prints these logs when the test fails (Dovecot, the proxy, ...). */
export function printLogsOnFailure(
  sources: () => Array<{ name: string; text: () => string } | undefined>,
): void {
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      for (const source of sources()) {
        if (!source) continue;
        const text = source.text();
        // The tail is what matters; a 20 MB test can make logs long.
        console.error(
          `\n----- ${source.name} log (last 200 lines) -----\n${text.split('\n').slice(-200).join('\n')}`,
        );
      }
    });
  });
}

/** A raw socket reading CRLF lines, for assertions on the exact protocol exchange. */
export class LineClient {
  private buffer = '';
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private closed = false;

  private constructor(public socket: Socket | TLSSocket) {
    this.attach();
  }

  static async open(o: {
    host: string;
    port: number;
    tls?: { ca: string; servername?: string };
  }): Promise<LineClient> {
    const socket = o.tls
      ? tlsConnect({ host: o.host, port: o.port, ca: o.tls.ca, servername: o.tls.servername ?? 'localhost' })
      : netConnect({ host: o.host, port: o.port });
    await new Promise<void>((resolve, reject) => {
      socket.once(o.tls ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    return new LineClient(socket);
  }

  private attach(): void {
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let eol: number;
      while ((eol = this.buffer.indexOf('\r\n')) >= 0) {
        this.lines.push(this.buffer.slice(0, eol));
        this.buffer = this.buffer.slice(eol + 2);
      }
      this.waiter?.();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    this.socket.on('error', () => undefined);
  }

  /** Upgrades this connection in place (after the server's STARTTLS go-ahead). */
  async startTls(ca: string, servername = 'localhost'): Promise<void> {
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('close');
    const secure = tlsConnect({ socket: this.socket as Socket, ca, servername });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.attach();
  }

  send(line: string): void {
    this.socket.write(`${line}\r\n`);
  }

  /** The next line matching `pattern` (lines before it are returned too, for transcripts). */
  async readUntil(pattern: RegExp, timeoutMs = 15_000): Promise<string[]> {
    const seen: string[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.lines.length > 0) {
        const line = this.lines.shift()!;
        seen.push(line);
        if (pattern.test(line)) return seen;
      }
      if (this.closed) throw new Error(`connection closed before ${pattern}; got:\n${seen.join('\n')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}; got:\n${seen.join('\n')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve();
        };
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export function xoauth2(user: string, token: string): string {
  return Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`).toString('base64');
}

/** An RFC 5322 message with CRLF line ends (what IMAP returns byte-exact from a maildir file). */
export function testMessage(o: { from?: string; to: string; subject: string; body?: string }): string {
  return [
    `From: ${o.from ?? 'sender@example.net'}`,
    `To: ${o.to}`,
    `Subject: ${o.subject}`,
    `Message-ID: <${o.subject.replace(/[^A-Za-z0-9]/g, '')}.${Date.now()}@e2e.test>`,
    'Date: Sat, 28 Nov 2026 12:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    o.body ?? `Body of ${o.subject}.\r\nSecond line with UTF-8: grüße.`,
    '',
  ].join('\r\n');
}

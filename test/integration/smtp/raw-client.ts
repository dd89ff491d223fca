/** A minimal line-level SMTP client for tests that need to see (and send) exact bytes. */
import type { ConnectionOptions } from 'node:tls';
import { RawClient, openRawSocket } from '../../helpers/raw-client.js';

export class RawSmtpClient extends RawClient {
  static async connect(
    port: number,
    tls = false,
    tlsOptions: ConnectionOptions = {},
  ): Promise<RawSmtpClient> {
    return new RawSmtpClient(await openRawSocket(port, tls, { servername: 'localhost', ...tlsOptions }));
  }

  /** One complete (possibly multi-line) reply, lines joined with CRLF, without the final CRLF. */
  async reply(timeoutMs = 20_000): Promise<string> {
    const lines: string[] = [];
    for (;;) {
      const nl = this.buffer.indexOf('\r\n');
      if (nl === -1) {
        await this.waitForData(timeoutMs, () => `buffered: ${JSON.stringify(this.unread)}`);
        continue;
      }
      const line = this.buffer.subarray(0, nl).toString('latin1');
      this.buffer = this.buffer.subarray(nl + 2);
      lines.push(line);
      if (line[3] !== '-') return lines.join('\r\n');
    }
  }

  async command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Resolves once the server closed the connection (what it sent before stays unread). */
  async waitClosed(timeoutMs = 20_000): Promise<void> {
    await this.waitForClose(timeoutMs);
  }

  /** Everything received and not yet read as a reply. */
  get unread(): string {
    return this.buffer.toString('latin1');
  }

  async startTls(options: ConnectionOptions = {}): Promise<void> {
    await this.upgradeToTls({ servername: 'localhost', ...options });
  }
}

export const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
export const plainIr = (user: string, pass: string): string => b64(`\0${user}\0${pass}`);

/** A minimal byte-level POP3 client for tests that need to see (and send) exact bytes. */
import type { ConnectionOptions } from 'node:tls';
import { RawClient, openRawSocket } from '../../helpers/raw-client.js';

const READ_TIMEOUT_MS = 20_000;

export class RawPop3Client extends RawClient {
  /** Connects (implicit TLS when `tls`, trusting the test CA) and returns with the greeting unread. */
  static async connect(
    port: number,
    tls = false,
    tlsOptions: ConnectionOptions = {},
  ): Promise<RawPop3Client> {
    return new RawPop3Client(await openRawSocket(port, tls, { servername: 'localhost', ...tlsOptions }));
  }

  #unread = (): string => `unread: ${JSON.stringify(this.buffer.toString())}`;

  /** The next line, without CRLF (UTF-8). */
  async line(): Promise<string> {
    for (;;) {
      const lf = this.buffer.indexOf('\r\n');
      if (lf >= 0) {
        const text = this.buffer.subarray(0, lf).toString('utf8');
        this.buffer = this.buffer.subarray(lf + 2);
        return text;
      }
      await this.waitForData(READ_TIMEOUT_MS, this.#unread);
    }
  }

  /** A multi-line body after its status line, up to and including `.\r\n`, as raw bytes. */
  async multiline(): Promise<Buffer> {
    for (;;) {
      const atStart = this.buffer.subarray(0, 3).toString('latin1') === '.\r\n' ? 0 : -1;
      const end = atStart === 0 ? 0 : this.buffer.indexOf('\r\n.\r\n');
      if (end >= 0) {
        const stop = atStart === 0 ? 3 : end + 5;
        const body = this.buffer.subarray(0, stop);
        this.buffer = this.buffer.subarray(stop);
        return body;
      }
      await this.waitForData(READ_TIMEOUT_MS, this.#unread);
    }
  }

  /** Sends one command line and returns the status line of the reply. */
  async command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.line();
  }

  /** Upgrades to TLS after `STLS` got its `+OK` (trusting the test CA). */
  async startTls(): Promise<void> {
    await this.upgradeToTls({ servername: 'localhost' });
    this.buffer = Buffer.alloc(0);
  }

  /** Resolves once the server has closed the connection (what it sent meanwhile is dropped). */
  async waitClosed(timeoutMs = READ_TIMEOUT_MS): Promise<void> {
    await this.waitForClose(timeoutMs, () => {
      this.buffer = Buffer.alloc(0);
    });
  }
}

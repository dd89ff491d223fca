/** A bare IMAP client for exact transcripts: write lines, read until a pattern, with TLS options. */
import type { Socket } from 'node:net';
import { RawClient, openRawSocket } from '../../helpers/raw-client.js';

export class RawImap extends RawClient {
  static async connect(port: number, tls = false, localAddress?: string): Promise<RawImap> {
    return new RawImap(await openRawSocket(port, tls, {}, localAddress));
  }

  /** A client on a socket the test connected itself (e.g. after writing a PROXY header). */
  static wrap(socket: Socket): RawImap {
    return new RawImap(socket);
  }

  /** Everything received so far. */
  get text(): string {
    return this.buffer.toString('utf8');
  }

  /** Waits until the received text matches, bounded by `timeoutMs`; returns all text. */
  async waitFor(pattern: RegExp | string, timeoutMs = 15_000): Promise<string> {
    const until = Date.now() + timeoutMs;
    const matches = (): boolean =>
      typeof pattern === 'string' ? this.text.includes(pattern) : pattern.test(this.text);
    while (!matches()) {
      const left = until - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${String(pattern)}; got ${JSON.stringify(this.text)}`);
      await this.waitForData(left, () => `before ${String(pattern)}; got ${JSON.stringify(this.text)}`);
    }
    return this.text;
  }

  async waitClosed(timeoutMs = 15_000): Promise<void> {
    await this.waitForClose(timeoutMs);
  }

  /** STARTTLS on this connection (after the server's OK). */
  async startTls(): Promise<void> {
    await this.upgradeToTls({ host: '127.0.0.1' });
  }
}

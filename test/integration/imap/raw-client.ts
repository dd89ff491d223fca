/** A bare IMAP client for exact transcripts: write lines, read until a pattern, with TLS options. */
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { getTestCerts } from '../../helpers/certs.js';

export class RawImap {
  #socket: Socket;
  #text = '';
  #closed = false;
  #waiters: (() => void)[] = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.#listen(socket);
  }

  #listen(socket: Socket): void {
    socket.on('data', (d: Buffer) => {
      this.#text += d.toString('utf8');
      this.#wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  static async connect(port: number, tls = false): Promise<RawImap> {
    const socket: Socket = tls
      ? tlsConnect({ host: '127.0.0.1', port, ca: getTestCerts().caPem })
      : netConnect(port, '127.0.0.1');
    await once(socket, tls ? 'secureConnect' : 'connect');
    return new RawImap(socket);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Everything received so far. */
  get text(): string {
    return this.#text;
  }

  write(data: string | Buffer): void {
    this.#socket.write(data);
  }

  /** Waits until the received text (from `from`) matches, bounded by `timeoutMs`; returns all text. */
  async waitFor(pattern: RegExp | string, timeoutMs = 15_000): Promise<string> {
    const until = Date.now() + timeoutMs;
    const matches = (): boolean =>
      typeof pattern === 'string' ? this.#text.includes(pattern) : pattern.test(this.#text);
    while (!matches()) {
      if (this.#closed)
        throw new Error(`closed before ${String(pattern)}; got ${JSON.stringify(this.#text)}`);
      const left = until - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${String(pattern)}; got ${JSON.stringify(this.#text)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.#text;
  }

  async waitClosed(timeoutMs = 15_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.#closed) {
      if (Date.now() > until) throw new Error('not closed in time');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 100);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** STARTTLS on this connection (after the server's OK). */
  async startTls(): Promise<void> {
    this.#socket.removeAllListeners('data');
    this.#socket.removeAllListeners('close');
    const secure: TLSSocket = tlsConnect({
      socket: this.#socket,
      host: '127.0.0.1',
      ca: getTestCerts().caPem,
    });
    await once(secure, 'secureConnect');
    this.#socket = secure;
    this.#listen(secure);
  }

  close(): void {
    this.#socket.destroy();
  }
}

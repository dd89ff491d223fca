/**
 * The socket half of the raw protocol clients in test/integration/<protocol>/raw-client.ts: connect
 * (plain or implicit TLS, trusting the test CA), collect every byte received, wait for more or for the
 * close with a deadline, upgrade to TLS in place. Each protocol's client adds how it reads a reply.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { getTestCerts } from './certs.js';

/**
 * Opens a connection to the proxy on 127.0.0.1 (implicit TLS when `tls`), from `localAddress` when
 * given (another address of 127.0.0.0/8, to play a second client host).
 */
export async function openRawSocket(
  port: number,
  tls: boolean,
  tlsOptions: ConnectionOptions = {},
  localAddress?: string,
): Promise<Socket> {
  const from = localAddress ? { localAddress } : {};
  const socket = tls
    ? tlsConnect({ host: '127.0.0.1', port, ca: getTestCerts().caPem, ...from, ...tlsOptions })
    : netConnect({ host: '127.0.0.1', port, ...from });
  await new Promise<void>((resolve, reject) => {
    socket.once(tls ? 'secureConnect' : 'connect', () => resolve());
    socket.once('error', reject);
  });
  return socket;
}

export class RawClient {
  #socket: Socket;
  /** Received and not yet consumed by the protocol client. */
  protected buffer: Buffer = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  #closed = false;

  protected constructor(socket: Socket) {
    this.#socket = socket;
    this.#listen(socket);
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(data: string | Buffer): void {
    this.#socket.write(data);
  }

  close(): void {
    this.#socket.destroy();
  }

  /** Hangs up with a TCP reset: unlike a close (a FIN, which may also be a half-close), unmistakable. */
  reset(): void {
    this.#socket.resetAndDestroy();
  }

  #listen(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Resolves on the next bytes or the close; rejects after `timeoutMs` (with `what` in the message). */
  protected waitForData(timeoutMs: number, what: () => string): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`connection closed; ${what()}`));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timeout; ${what()}`)), timeoutMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Waits for the server to close, bounded by `timeoutMs`; `onWait` runs before each wait. */
  protected async waitForClose(timeoutMs: number, onWait: () => void = () => undefined): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.#closed) {
      const left = until - Date.now();
      if (left <= 0) throw new Error('connection not closed in time');
      onWait();
      await this.waitForData(left, () => 'waiting for the close').catch(() => undefined);
    }
  }

  /** Client side of STARTTLS / STLS, after the server's go-ahead (trusting the test CA). */
  protected async upgradeToTls(options: ConnectionOptions = {}): Promise<void> {
    const plain = this.#socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secured = tlsConnect({ socket: plain, ca: getTestCerts().caPem, ...options });
    await new Promise<void>((resolve, reject) => {
      secured.once('secureConnect', () => resolve());
      secured.once('error', reject);
    });
    this.#socket = secured;
    this.#listen(secured);
  }
}

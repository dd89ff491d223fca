/** A minimal byte-level POP3 client for tests that need to see (and send) exact bytes. */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { getTestCerts } from '../../helpers/certs.js';

const READ_TIMEOUT_MS = 20_000;

export class RawPop3Client {
  #socket: Socket;
  #buffer: Buffer = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.#listen(socket);
  }

  /** Connects (implicit TLS when `tls`, trusting the test CA) and returns with the greeting unread. */
  static async connect(
    port: number,
    tls = false,
    tlsOptions: ConnectionOptions = {},
  ): Promise<RawPop3Client> {
    const socket = tls
      ? tlsConnect({
          host: '127.0.0.1',
          port,
          ca: getTestCerts().caPem,
          servername: 'localhost',
          ...tlsOptions,
        })
      : netConnect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once(tls ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    return new RawPop3Client(socket);
  }

  get closed(): boolean {
    return this.#closed;
  }

  #listen(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  async #wait(): Promise<void> {
    if (this.#closed)
      throw new Error(`connection closed; unread: ${JSON.stringify(this.#buffer.toString())}`);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no reply in time; unread: ${JSON.stringify(this.#buffer.toString())}`)),
        READ_TIMEOUT_MS,
      );
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** The next line, without CRLF (UTF-8). */
  async line(): Promise<string> {
    for (;;) {
      const lf = this.#buffer.indexOf('\r\n');
      if (lf >= 0) {
        const text = this.#buffer.subarray(0, lf).toString('utf8');
        this.#buffer = this.#buffer.subarray(lf + 2);
        return text;
      }
      await this.#wait();
    }
  }

  /** A multi-line body after its status line, up to and including `.\r\n`, as raw bytes. */
  async multiline(): Promise<Buffer> {
    for (;;) {
      const atStart = this.#buffer.subarray(0, 3).toString('latin1') === '.\r\n' ? 0 : -1;
      const end = atStart === 0 ? 0 : this.#buffer.indexOf('\r\n.\r\n');
      if (end >= 0) {
        const stop = atStart === 0 ? 3 : end + 5;
        const body = this.#buffer.subarray(0, stop);
        this.#buffer = this.#buffer.subarray(stop);
        return body;
      }
      await this.#wait();
    }
  }

  write(data: string | Buffer): void {
    this.#socket.write(data);
  }

  /** Sends one command line and returns the status line of the reply. */
  async command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.line();
  }

  /** Upgrades to TLS after `STLS` got its `+OK` (trusting the test CA). */
  async startTls(): Promise<void> {
    const plain = this.#socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secured = tlsConnect({ socket: plain, ca: getTestCerts().caPem, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      secured.once('secureConnect', () => resolve());
      secured.once('error', reject);
    });
    this.#socket = secured;
    this.#buffer = Buffer.alloc(0);
    this.#listen(secured);
  }

  /** Resolves once the server has closed the connection. */
  async waitClosed(timeoutMs = READ_TIMEOUT_MS): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.#closed) {
      if (Date.now() > until) throw new Error('connection not closed in time');
      this.#buffer = Buffer.alloc(0);
      await this.#wait().catch(() => undefined);
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

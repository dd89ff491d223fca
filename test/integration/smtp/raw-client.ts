/** A minimal line-level SMTP client for tests that need to see (and send) exact bytes. */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { getTestCerts } from '../../helpers/certs.js';

export class RawSmtpClient {
  #socket: Socket;
  #buffer = '';
  #waiters: (() => void)[] = [];
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.#listen(socket);
  }

  static async connect(
    port: number,
    tls = false,
    tlsOptions: ConnectionOptions = {},
  ): Promise<RawSmtpClient> {
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
    return new RawSmtpClient(socket);
  }

  get closed(): boolean {
    return this.#closed;
  }

  #listen(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.#buffer += chunk.toString('latin1');
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

  async #wait(timeoutMs: number): Promise<void> {
    if (this.#closed) throw new Error(`connection closed; buffered: ${JSON.stringify(this.#buffer)}`);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timeout; buffered: ${JSON.stringify(this.#buffer)}`)),
        timeoutMs,
      );
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  write(data: string | Buffer): void {
    this.#socket.write(data);
  }

  /** One complete (possibly multi-line) reply, lines joined with CRLF, without the final CRLF. */
  async reply(timeoutMs = 20_000): Promise<string> {
    const lines: string[] = [];
    for (;;) {
      const nl = this.#buffer.indexOf('\r\n');
      if (nl === -1) {
        await this.#wait(timeoutMs);
        continue;
      }
      const line = this.#buffer.slice(0, nl);
      this.#buffer = this.#buffer.slice(nl + 2);
      lines.push(line);
      if (line[3] !== '-') return lines.join('\r\n');
    }
  }

  async command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Resolves once the server closed the connection. */
  async waitClosed(timeoutMs = 20_000): Promise<void> {
    while (!this.#closed)
      await this.#wait(timeoutMs).catch((e: Error) => (this.#closed ? undefined : Promise.reject(e)));
  }

  /** Everything received and not yet read as a reply. */
  get unread(): string {
    return this.#buffer;
  }

  async startTls(options: ConnectionOptions = {}): Promise<void> {
    const plain = this.#socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secured = tlsConnect({
      socket: plain,
      ca: getTestCerts().caPem,
      servername: 'localhost',
      ...options,
    });
    await new Promise<void>((resolve, reject) => {
      secured.once('secureConnect', () => resolve());
      secured.once('error', reject);
    });
    this.#socket = secured;
    this.#listen(secured);
  }

  close(): void {
    this.#socket.destroy();
  }
}

export const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
export const plainIr = (user: string, pass: string): string => b64(`\0${user}\0${pass}`);

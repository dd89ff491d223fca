/**
 * The client side of the benchmarks: a TLS connection with line reads for the dialogue and a raw
 * counting mode for bulk transfers (scans for an end marker without keeping the bytes).
 */
import { connect as connectPlain, type Socket } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';

export type Mode = 'direct' | 'bare' | 'proxy';
export const MODES: Mode[] = ['direct', 'bare', 'proxy'];

export interface Credentials {
  username: string;
  password: string;
  email: string;
  accessToken: string;
}

export class Conn {
  readonly socket: TLSSocket | Socket;
  #text = '';
  #wake: (() => void) | undefined;
  #failure: Error | undefined;
  #raw: ((chunk: Buffer) => void) | undefined;

  private constructor(socket: TLSSocket | Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      if (this.#raw) this.#raw(chunk);
      else {
        this.#text += chunk.toString('latin1');
        this.#notify();
      }
    });
    const fail = (err: Error): void => {
      this.#failure ??= err;
      this.#notify();
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  /** `ca` undefined: a clear-text connection. */
  static open(port: number, ca: string | undefined, timeoutMs = 30_000): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const socket =
        ca === undefined
          ? connectPlain({ host: '127.0.0.1', port })
          : connect({ host: '127.0.0.1', port, ca, minVersion: 'TLSv1.2' });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error('TLS connect timed out'));
      }, timeoutMs);
      socket.once(ca === undefined ? 'connect' : 'secureConnect', () => {
        clearTimeout(timer);
        socket.off('error', reject);
        resolve(new Conn(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  async readLine(timeoutMs = 30_000): Promise<string> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const lf = this.#text.indexOf('\n');
      if (lf >= 0) {
        const line = this.#text.slice(0, lf).replace(/\r$/, '');
        this.#text = this.#text.slice(lf + 1);
        return line;
      }
      if (this.#failure) throw this.#failure;
      const left = until - Date.now();
      if (left <= 0) throw new Error('read timed out');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /**
   * Raw mode until `marker` has been seen, then back to line mode with what followed it (so the
   * rest of the line holding the marker can be read). Resolves with the byte count up to the marker.
   */
  countUntil(marker: string, timeoutMs = 120_000): Promise<number> {
    const m = Buffer.from(marker, 'latin1');
    let tail = Buffer.from(this.#text, 'latin1');
    this.#text = '';
    let bytes = 0;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => finish(new Error(`no ${JSON.stringify(marker)} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      const finish = (err?: Error, rest?: Buffer): void => {
        clearTimeout(timer);
        this.#raw = undefined;
        this.socket.off('close', onClose);
        if (err) reject(err);
        else {
          this.#text = rest?.toString('latin1') ?? '';
          resolve(bytes);
        }
      };
      const onClose = (): void => finish(new Error('connection closed during transfer'));
      const scan = (chunk: Buffer): void => {
        const joint = Buffer.concat([tail, chunk.subarray(0, m.length - 1)]);
        let at = joint.indexOf(m);
        if (at >= 0) {
          bytes += at + m.length - tail.length;
          finish(undefined, Buffer.concat([joint.subarray(at + m.length), chunk.subarray(m.length - 1)]));
          return;
        }
        at = chunk.indexOf(m);
        if (at >= 0) {
          bytes += at + m.length;
          finish(undefined, chunk.subarray(at + m.length));
          return;
        }
        bytes += chunk.length;
        tail = Buffer.from(chunk.subarray(Math.max(0, chunk.length - (m.length - 1))));
      };
      this.#raw = scan;
      this.socket.on('close', onClose);
      if (tail.length > 0) {
        const first = tail;
        tail = Buffer.alloc(0);
        scan(first);
      }
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Reads IMAP lines until the tagged reply; throws unless it is OK. */
export async function imapTagged(conn: Conn, tag: string, timeoutMs?: number): Promise<string> {
  for (;;) {
    const line = await conn.readLine(timeoutMs);
    if (line.startsWith(`${tag} `)) {
      if (!line.startsWith(`${tag} OK`)) throw new Error(`IMAP ${tag}: ${line.slice(0, 200)}`);
      return line;
    }
  }
}

export function xoauth2(email: string, token: string): string {
  return Buffer.from(`user=${email}\x01auth=Bearer ${token}\x01\x01`).toString('base64');
}

/** Greeting + login: LOGIN with the local password through the proxy, XOAUTH2 with the token otherwise. */
export async function imapLogin(conn: Conn, mode: Mode, c: Credentials, timeoutMs?: number): Promise<void> {
  const greeting = await conn.readLine(timeoutMs);
  if (!greeting.startsWith('* OK')) throw new Error(`IMAP greeting: ${greeting.slice(0, 200)}`);
  conn.write(
    mode === 'proxy'
      ? `L1 LOGIN ${c.username} ${c.password}\r\n`
      : `L1 AUTHENTICATE XOAUTH2 ${xoauth2(c.email, c.accessToken)}\r\n`,
  );
  await imapTagged(conn, 'L1', timeoutMs);
}

/** One SMTP reply (all lines); throws unless the code is `expect`. */
export async function smtpReply(conn: Conn, expect: number, timeoutMs?: number): Promise<string> {
  for (;;) {
    const line = await conn.readLine(timeoutMs);
    if (line[3] === '-') continue;
    if (Number(line.slice(0, 3)) !== expect)
      throw new Error(`SMTP expected ${expect}: ${line.slice(0, 200)}`);
    return line;
  }
}

export async function smtpLogin(conn: Conn, mode: Mode, c: Credentials): Promise<void> {
  await smtpReply(conn, 220);
  conn.write('EHLO client.bench\r\n');
  await smtpReply(conn, 250);
  conn.write(
    mode === 'proxy'
      ? `AUTH PLAIN ${Buffer.from(`\0${c.username}\0${c.password}`).toString('base64')}\r\n`
      : `AUTH XOAUTH2 ${xoauth2(c.email, c.accessToken)}\r\n`,
  );
  await smtpReply(conn, 235);
}

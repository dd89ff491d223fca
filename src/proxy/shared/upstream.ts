/**
 * The upstream leg before authentication: connect (implicit TLS, or plain then the protocol's STARTTLS),
 * always verifying the server certificate, and read the protocol dialogue line by line. After login,
 * `detach()` hands the socket and any bytes already read to the relay.
 */
import { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { ResolvedAccount, UpstreamServer } from '../../config/types.js';
import { ProxyError } from '../../errors.js';
import { upstreamTlsOptions } from './tls-context.js';
import { rememberSessions, resumeOptions, tlsSessionKey } from './tls-sessions.js';

/** Longest upstream line we accept before login (Gmail's CAPABILITY is ~300 bytes). */
const MAX_UPSTREAM_LINE = 64 * 1024;
/** TCP keepalive probe delay on both legs: NAT boxes drop idle flows after a few minutes. */
export const KEEPALIVE_DELAY_MS = 60_000;

/**
 * One upstream connection during the pre-auth dialogue. Reads are pull-style (`readLine`, `readBytes`)
 * so the protocol code reads like a transcript. Any socket error or close fails the pending read and
 * every later one with a ProxyError 'upstream-unavailable'.
 */
export class UpstreamConnection {
  #socket: Socket;
  #buffer: Buffer = Buffer.alloc(0);
  #failure: ProxyError | undefined;
  #wake: (() => void) | undefined;
  /** The TLS socket while `startTls` sets it up: `fail()` must destroy it too, or the handshake waits on. */
  #securing: TLSSocket | undefined;
  readonly #label: string;

  constructor(socket: Socket, label: string) {
    this.#socket = socket;
    this.#label = label;
    this.#attach(socket);
  }

  /** `host:port`, for log lines and messages. */
  get label(): string {
    return this.#label;
  }

  get socket(): Socket {
    return this.#socket;
  }

  /**
   * Still as the dialogue left it: not failed, not closed, and nothing unread (a warm connection whose
   * server said anything while it waited, e.g. `* BYE`, must not serve a login).
   */
  get untouched(): boolean {
    return !this.#failure && !this.#socket.destroyed && this.#socket.writable && this.#buffer.length === 0;
  }

  /** Our own listeners, so we can remove exactly them (a TLSSocket has internal ones that must stay). */
  #listeners:
    { socket: Socket; data: (c: Buffer) => void; error: (e: Error) => void; close: () => void } | undefined;

  #attach(socket: Socket): void {
    const listeners = {
      socket,
      data: (chunk: Buffer): void => {
        this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
        this.#notify();
      },
      error: (err: Error): void => this.fail(this.#unavailable(`connection error: ${err.message}`, err)),
      close: (): void => this.fail(this.#unavailable('connection closed by the server')),
    };
    socket.on('data', listeners.data);
    socket.on('error', listeners.error);
    socket.on('close', listeners.close);
    this.#listeners = listeners;
  }

  #detachListeners(): void {
    const l = this.#listeners;
    if (!l) return;
    l.socket.off('data', l.data);
    l.socket.off('error', l.error);
    l.socket.off('close', l.close);
    // Keep a no-op error handler: an error with no listener would crash the process.
    l.socket.on('error', () => undefined);
    this.#listeners = undefined;
  }

  #unavailable(reason: string, cause?: unknown): ProxyError {
    return new ProxyError('upstream-unavailable', `upstream ${this.#label}: ${reason}`, {
      cause,
      detail: reason,
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Fails pending and later reads (first failure wins) and destroys the socket. */
  fail(error: ProxyError): void {
    if (!this.#failure) this.#failure = error;
    this.#socket.destroy();
    this.#securing?.destroy();
    this.#notify();
  }

  async #waitForData(): Promise<void> {
    if (this.#failure) throw this.#failure;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
  }

  /** Next CRLF-terminated line without its line ending (a bare LF is accepted too). */
  async readLine(): Promise<string> {
    for (;;) {
      const lf = this.#buffer.indexOf(0x0a);
      if (lf >= 0) {
        const end = lf > 0 && this.#buffer[lf - 1] === 0x0d ? lf - 1 : lf;
        const line = this.#buffer.subarray(0, end).toString('utf8');
        this.#buffer = this.#buffer.subarray(lf + 1);
        return line;
      }
      if (this.#buffer.length > MAX_UPSTREAM_LINE) {
        const err = this.#unavailable('line too long');
        this.fail(err);
        throw err;
      }
      await this.#waitForData();
    }
  }

  /** Exactly `n` bytes (for literals in upstream responses). */
  async readBytes(n: number): Promise<Buffer> {
    while (this.#buffer.length < n) await this.#waitForData();
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  write(data: string | Buffer): void {
    if (this.#failure) throw this.#failure;
    this.#socket.write(data);
  }

  /**
   * Switches to TLS after the protocol's STARTTLS exchange succeeded. Bytes the server sent before the
   * handshake are dropped (the same injection rule as on the client side).
   */
  async startTls(server: UpstreamServer, ca: string | undefined): Promise<void> {
    if (this.#failure) throw this.#failure;
    const plain = this.#socket;
    this.#detachListeners();
    this.#buffer = Buffer.alloc(0);
    const secured = await new Promise<TLSSocket>((resolve, reject) => {
      const resume = tlsSessionKey(server, ca);
      const socket = tlsConnect(
        { ...upstreamTlsOptions(server.host, ca), ...resumeOptions(resume), socket: plain },
        () => {
          socket.off('error', reject);
          socket.off('close', onClose);
          resolve(socket);
        },
      );
      // A deadline or abort destroys the sockets mid-handshake: then only 'close' comes, no 'error'.
      const onClose = (): void =>
        reject(this.#failure ?? new Error('connection closed during the handshake'));
      this.#securing = socket;
      rememberSessions(socket, resume);
      socket.once('error', reject);
      socket.once('close', onClose);
    })
      .catch((err: Error) => {
        const error = err instanceof ProxyError ? err : this.#unavailable(`TLS failed: ${err.message}`, err);
        this.fail(error);
        throw error;
      })
      .finally(() => {
        this.#securing = undefined;
      });
    this.#socket = secured;
    this.#attach(secured);
  }

  /**
   * Hands the socket over: stops reading into our buffer and returns what was read but not consumed
   * (it belongs to the client, in order, before anything else the socket delivers).
   */
  detach(): { socket: Socket; pending: Buffer } {
    const socket = this.#socket;
    socket.pause();
    this.#detachListeners();
    const pending = this.#buffer;
    this.#buffer = Buffer.alloc(0);
    this.#failure = this.#unavailable('detached');
    return { socket, pending };
  }

  close(): void {
    this.fail(this.#unavailable('closed'));
  }

  /**
   * Runs `work` with a deadline: when it passes, the connection fails (and so the pending read) with
   * ProxyError 'upstream-unavailable' `upstream <label>: <reason>`, whose detail is `detail` (default:
   * the reason).
   */
  async withDeadline<T>(
    ms: number,
    timeout: { reason: string; detail?: string },
    work: () => Promise<T>,
  ): Promise<T> {
    const { reason, detail = reason } = timeout;
    const timer = setTimeout(
      () =>
        this.fail(new ProxyError('upstream-unavailable', `upstream ${this.#label}: ${reason}`, { detail })),
      ms,
    );
    try {
      return await work();
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A step's deadline worded `<what> timed out after <ms> ms` (detail `<what> timed out`), for `withDeadline`. */
export function timedOutAfter(what: string, ms: number): { reason: string; detail: string } {
  return { reason: `${what} timed out after ${ms} ms`, detail: `${what} timed out` };
}

export interface ConnectUpstreamOptions {
  server: UpstreamServer;
  /** Extra trusted CA (PEM), added to the system CAs. */
  ca?: string;
  /** One deadline for DNS, TCP, TLS, greeting and (for STARTTLS) the TLS switch. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** The protocol-specific part of connecting: greeting, and how to ask for STARTTLS. */
export interface UpstreamDialect<G> {
  /** Reads (and checks) the server greeting; throw a ProxyError to refuse the server. */
  readGreeting(conn: UpstreamConnection): Promise<G>;
  /** Sends the protocol's STARTTLS request and reads the go-ahead; called only for `tls: 'starttls'`. */
  requestStartTls(conn: UpstreamConnection, greeting: G): Promise<void>;
}

/**
 * Connects to an upstream mail server and runs the dialect up to a TLS-protected, greeted connection.
 * Throws ProxyError 'upstream-unavailable' on DNS/TCP/TLS failure, certificate errors, a bad greeting
 * or the deadline.
 */
export async function connectUpstream<G>(
  options: ConnectUpstreamOptions,
  dialect: UpstreamDialect<G>,
): Promise<{ conn: UpstreamConnection; greeting: G }> {
  const { server, ca } = options;
  const label = `${server.host}:${server.port}`;
  let socket: Socket;
  if (server.tls === 'implicit') {
    const resume = tlsSessionKey(server, ca);
    const secure = tlsConnect({
      ...upstreamTlsOptions(server.host, ca),
      ...resumeOptions(resume),
      port: server.port,
    });
    rememberSessions(secure, resume);
    socket = secure;
  } else {
    socket = new Socket().connect({ host: server.host, port: server.port });
  }
  socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
  socket.setNoDelay(true);
  const conn = new UpstreamConnection(socket, label);
  const timer = setTimeout(
    () =>
      conn.fail(
        new ProxyError('upstream-unavailable', `upstream ${label}: timed out after ${options.timeoutMs} ms`, {
          detail: 'timed out',
        }),
      ),
    options.timeoutMs,
  );
  const onAbort = (): void =>
    conn.fail(new ProxyError('upstream-unavailable', `upstream ${label}: aborted`, { detail: 'aborted' }));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const greeting = await dialect.readGreeting(conn);
    if (server.tls === 'starttls') {
      await dialect.requestStartTls(conn, greeting);
      await conn.startTls(server, ca);
    }
    return { conn, greeting };
  } catch (err) {
    conn.close();
    if (err instanceof ProxyError) throw err;
    throw new ProxyError('upstream-unavailable', `upstream ${label}: ${(err as Error).message}`, {
      cause: err,
      detail: (err as Error).message,
    });
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

/** The account's IMAP or POP3 server; none throws ProxyError 'upstream-unavailable' (as a login reports it). */
export function accountServer(account: ResolvedAccount, protocol: 'imap' | 'pop3'): UpstreamServer {
  const server = account.connection[protocol];
  if (!server) {
    const name = protocol.toUpperCase();
    throw new ProxyError(
      'upstream-unavailable',
      `connection ${account.connection.name} has no ${name} server`,
      {
        detail: `no ${name} server configured`,
      },
    );
  }
  return server;
}

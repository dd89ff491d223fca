/**
 * After login: bytes flow both ways untouched until either side goes away.
 *
 * - Backpressure: a destination's full write buffer pauses the faster side (a 20 MB FETCH does not
 *   pile up in our memory).
 * - Order: bytes the client pipelined after its login command, and bytes the upstream sent after its
 *   OK, are written first, before anything the sockets deliver later (cf. undici `onUpgrade`).
 * - No idle timeout of our own (IMAP IDLE may sit silent for 29 minutes); TCP keepalive instead.
 * - Either side ending or failing ends the other; the promise resolves once both are closed. On an
 *   SMTP listener a client's end of input (a half-close) leaves our side open, so what the upstream
 *   answers to the commands before it still reaches the client.
 * - Every leg gets a larger write buffer than Node's default (`RELAY_WRITE_BUFFER`). Into a TLS
 *   leg `pipe()` moves the bytes, and the room keeps it from pausing and resuming its source for
 *   every TLS record. Into a plain leg `coalescingPipe()` moves them, gathering the chunks of one
 *   pass of the event loop into one `writev`, and the room is what a batch fills. With both, relaying
 *   costs 4-17 % less CPU per MB than a bare `pipe()` relay (docs/performance.md).
 * - One listener per direction and chunk, as in a bare relay. The byte counts come from the sockets'
 *   own counters (`bytesRead`, cleartext for TLS sockets too), taken at the start and read when
 *   asked; a second 'data' listener per socket cost an extra call and an emit with two listeners
 *   (an array copy) for every chunk (docs/performance.md).
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { coalescingPipe } from './coalescing-pipe.js';
import { RELAY_WRITE_BUFFER } from './limits.js';
import { KEEPALIVE_DELAY_MS } from './upstream.js';

/** After one side closed, how long the other may take to flush before it is destroyed. */
const DRAIN_GRACE_MS = 10_000;

export interface RelayOptions {
  client: Socket;
  upstream: Socket;
  /** Client bytes already read (pipelined after the login command): sent upstream first. */
  clientPending?: Buffer;
  /** Upstream bytes already read (after its auth OK): sent to the client first. */
  upstreamPending?: Buffer;
  /** The client already shut down its sending side (half-open): the upstream gets its end at once. */
  clientEnded?: boolean;
}

/** Byte counts are what the relay read from each socket; pending bytes were counted by their reader. */
export interface RelayResult {
  bytesFromClient: number;
  bytesToClient: number;
  /** Who went first. */
  endedBy: 'client' | 'upstream';
  /** The first socket error, if one ended the relay (e.g. ECONNRESET). */
  error?: Error;
}

export interface Relay {
  readonly done: Promise<RelayResult>;
  /** Ends both legs now (shutdown). */
  destroy(): void;
  /** Live byte counters. */
  readonly bytesFromClient: number;
  readonly bytesToClient: number;
}

/** Runs `callback` once the socket has emitted 'close', also when that already happened. */
function whenClosed(socket: Socket, callback: () => void): void {
  if (socket.closed) queueMicrotask(callback);
  else socket.once('close', callback);
}

/**
 * Gives a socket the relay's write buffer. A socket's buffer size is fixed when it is made, and the
 * relay's sockets are made in several places (listeners, STARTTLS, upstream connects), Node's own
 * TLS server among them, which does not pass a size on to the sockets it accepts; so it is set here,
 * on the stream state that Node's `writableHighWaterMark` reads. Assigning a field the state already
 * has keeps its hidden class.
 */
function widenWriteBuffer(socket: Socket): void {
  const state = (socket as unknown as { _writableState?: { highWaterMark?: unknown } })._writableState;
  if (state && typeof state.highWaterMark === 'number' && state.highWaterMark < RELAY_WRITE_BUFFER) {
    state.highWaterMark = RELAY_WRITE_BUFFER;
  }
}

/**
 * Moves `src` into `dst`. A TLS socket reports a write done a turn later and takes each write as
 * TLS records anyway, so there plain `pipe()` with the wide buffer is cheapest (batches would only
 * be copied together once more before encryption); a plain socket makes a system call per write,
 * so there chunks of one pass are batched.
 */
function forward(src: Socket, dst: Socket): void {
  if ((dst as TLSSocket).encrypted === true) src.pipe(dst);
  else coalescingPipe(src, dst);
}

/**
 * What the socket has read from the network that is not yet ours: bytes still in its stream buffer
 * (read by the kernel side, not yet emitted) are the relay's to move and count.
 */
function readSoFar(socket: Socket): number {
  return socket.bytesRead - socket.readableLength;
}

export function startRelay(options: RelayOptions): Relay {
  const { client, upstream } = options;
  const clientStart = readSoFar(client);
  const upstreamStart = readSoFar(upstream);
  // Node keeps `bytesRead` after a socket is destroyed, so the totals hold once both legs closed.
  const fromClient = (): number => Math.max(0, client.bytesRead - clientStart);
  const toClient = (): number => Math.max(0, upstream.bytesRead - upstreamStart);
  let endedBy: 'client' | 'upstream' | undefined;
  let firstError: Error | undefined;

  // No socket.setTimeout(0) here: no socket timeout is left to clear (our timers are plain ones, and
  // Node clears a TLS listener's handshake timeout itself once the socket is secure), and on a socket
  // that never had one the call adds an own `timeout` property, which gives it a new hidden class. Node's stream code then meets
  // twice as many socket shapes as a bare relay's, goes megamorphic on every chunk's property loads,
  // and relaying costs a few per cent more instructions (docs/performance.md).
  for (const socket of [client, upstream]) {
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    socket.setNoDelay(true);
    widenWriteBuffer(socket);
  }

  if (options.clientPending && options.clientPending.length > 0) upstream.write(options.clientPending);
  if (options.upstreamPending && options.upstreamPending.length > 0) client.write(options.upstreamPending);
  // forward() ends the destination when the source ends (FIN both ways) and handles backpressure. A
  // client whose end of input came before the relay (a half-close during the login) will not emit
  // it again: the upstream gets it now, after the bytes the client pipelined.
  if (options.clientEnded) upstream.end();
  else forward(client, upstream);
  forward(upstream, client);

  const done = new Promise<RelayResult>((resolve) => {
    let closed = 0;
    const onGone = (side: 'client' | 'upstream', other: Socket) => (): void => {
      endedBy ??= side;
      closed += 1;
      if (closed === 2) {
        resolve({
          bytesFromClient: fromClient(),
          bytesToClient: toClient(),
          endedBy,
          ...(firstError ? { error: firstError } : {}),
        });
        return;
      }
      if (firstError) {
        other.destroy();
        return;
      }
      other.end();
      setTimeout(() => other.destroy(), DRAIN_GRACE_MS).unref();
    };
    const onError =
      (side: 'client' | 'upstream', other: Socket) =>
      (err: Error): void => {
        endedBy ??= side;
        firstError ??= err;
        other.destroy();
      };
    client.on('error', onError('client', upstream));
    upstream.on('error', onError('upstream', client));
    whenClosed(client, onGone('client', upstream));
    whenClosed(upstream, onGone('upstream', client));
  });
  // The sockets may have been paused by their previous owners.
  client.resume();
  upstream.resume();

  return {
    done,
    destroy(): void {
      client.destroy();
      upstream.destroy();
    },
    get bytesFromClient() {
      return fromClient();
    },
    get bytesToClient() {
      return toClient();
    },
  };
}

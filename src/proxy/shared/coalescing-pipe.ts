/**
 * `pipe()` for a destination whose writes complete at once (a plain TCP socket): the chunks a
 * source delivers in one pass of the event loop go out in one `writev` instead of one `write` each.
 *
 * A TLS source hands over one chunk per TLS record (at most 16 KiB), and a busy relay finds several
 * records in each socket read; a plain socket turns every chunk into a system call of its own, and
 * on loopback into a packet of its own too. So on the first chunk of a pass the destination is
 * corked and an immediate uncorks it: immediates run right after the poll phase of the same loop
 * iteration, once every socket that was ready has been read, so no byte waits for more input.
 *
 * A pass that brings a single chunk (a relay that keeps up, interactive traffic) gains nothing and
 * pays the immediate. After such a pass the next chunks go straight through, twice as many after
 * each further single-chunk pass (up to `MAX_STRAIGHT`), and the first pass that brings more than
 * one chunk again starts corking every pass. An idle relay therefore pays for an immediate on one
 * chunk in 64, a busy one saves a system call on all but one chunk of each pass.
 *
 * Semantics as `pipe()`: backpressure by the destination's `write()` result and `'drain'`, the
 * source's end ends the destination, nothing is written once the destination has closed. The batch
 * is bounded by the destination's write buffer: when `write()` says it is full the source pauses.
 */
import type { Readable, Writable } from 'node:stream';

/** The most chunks written straight through between two attempts to batch. */
export const MAX_STRAIGHT = 64;

export function coalescingPipe(src: Readable, dst: Writable): void {
  let corked = false;
  /** Chunks in the pass being gathered. */
  let batch = 0;
  /** Chunks still to write without corking, and how many the next single-chunk pass grants. */
  let straight = 0;
  let grant = 0;

  const flush = (): void => {
    corked = false;
    if (batch === 1) {
      grant = Math.min(MAX_STRAIGHT, grant === 0 ? 1 : grant * 2);
      straight = grant;
    } else {
      grant = 0;
    }
    dst.uncork();
  };
  const onData = (chunk: Buffer): void => {
    if (!corked) {
      if (straight > 0) {
        straight -= 1;
        if (!dst.write(chunk)) src.pause();
        return;
      }
      corked = true;
      batch = 0;
      dst.cork();
      setImmediate(flush);
    }
    batch += 1;
    if (!dst.write(chunk)) src.pause();
  };
  const onDrain = (): void => {
    src.resume();
  };
  const onEnd = (): void => {
    dst.end();
  };
  // As pipe() unpipes: the source stops, so what it still reads waits in it (and in the kernel).
  const stop = (): void => {
    src.pause();
    src.off('data', onData);
    src.off('end', onEnd);
    dst.off('drain', onDrain);
    dst.off('close', stop);
    dst.off('finish', stop);
  };
  src.on('data', onData);
  src.once('end', onEnd);
  dst.on('drain', onDrain);
  dst.once('close', stop);
  dst.once('finish', stop);
}

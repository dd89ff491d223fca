/**
 * coalescingPipe() against in-memory streams, where each pass of the event loop is under the test's
 * control: what one pass delivers is one write, single-chunk passes stop the corking, backpressure,
 * end and a closed destination behave as with pipe().
 */
import { setImmediate as nextPass } from 'node:timers/promises';
import { Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { coalescingPipe, MAX_STRAIGHT } from '../../../src/proxy/shared/coalescing-pipe.js';

/** A destination that records each write it is asked for (a batch is one entry with all its chunks). */
class Recorder extends Writable {
  readonly writes: Buffer[][] = [];
  corks = 0;
  /** Write callbacks held back (a reader that stopped reading) until `release()`. */
  #held: (() => void)[] = [];
  hold = false;

  constructor(highWaterMark = 96 * 1024) {
    super({ highWaterMark });
  }

  override cork(): void {
    this.corks += 1;
    super.cork();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.writes.push([chunk]);
    if (this.hold) this.#held.push(callback);
    else callback();
  }

  override _writev(chunks: { chunk: Buffer }[], callback: () => void): void {
    this.writes.push(chunks.map((c) => c.chunk));
    if (this.hold) this.#held.push(callback);
    else callback();
  }

  release(): void {
    this.hold = false;
    for (const callback of this.#held.splice(0)) callback();
  }

  get bytes(): Buffer {
    return Buffer.concat(this.writes.flat());
  }
}

/** A source the test pushes into; past its first read, a push while flowing emits 'data' at once. */
const source = (): Readable => new Readable({ read() {} });

const chunk = (n: number, size = 1024): Buffer => Buffer.alloc(size, n % 256);

describe('coalescingPipe', () => {
  it('writes the chunks of one pass of the event loop as one batch, in order', async () => {
    const src = source();
    const dst = new Recorder();
    coalescingPipe(src, dst);
    await nextPass();
    for (let i = 0; i < 5; i++) src.push(chunk(i));
    // Nothing is written before the pass ends, then all five at once.
    expect(dst.writes).toEqual([]);
    await nextPass();
    expect(dst.writes.map((w) => w.length)).toEqual([5]);
    expect(dst.bytes.equals(Buffer.concat([0, 1, 2, 3, 4].map((i) => chunk(i))))).toBe(true);
  });

  it('stops corking while passes bring one chunk each, and starts again when one brings more', async () => {
    const src = source();
    const dst = new Recorder();
    coalescingPipe(src, dst);
    await nextPass();
    const singles = 300;
    for (let i = 0; i < singles; i++) {
      src.push(chunk(i));
      await nextPass();
    }
    // Corked passes come at chunks 1, 3, 6, 11, 20, 37, 70, 135, 200, 265: ten in 300, then one in 65
    // (MAX_STRAIGHT straight through after each).
    expect(MAX_STRAIGHT).toBe(64);
    expect(dst.corks).toBe(10);
    expect(dst.writes.every((w) => w.length === 1)).toBe(true);
    // Passes of four chunks: at most MAX_STRAIGHT chunks go straight, then every pass is one batch.
    const before = dst.writes.length;
    const passes = MAX_STRAIGHT / 4 + 4;
    for (let p = 0; p < passes; p++) {
      for (let i = 0; i < 4; i++) src.push(chunk(i));
      await nextPass();
    }
    const batches = dst.writes.slice(before);
    expect(batches.slice(-3).map((w) => w.length)).toEqual([4, 4, 4]);
    expect(Buffer.concat(batches.flat()).length).toBe(passes * 4 * 1024);
  });

  it('pauses the source when the destination is full, and resumes it on drain', async () => {
    const src = source();
    const dst = new Recorder(16 * 1024);
    dst.hold = true;
    coalescingPipe(src, dst);
    await nextPass();
    for (let i = 0; i < 20; i++) src.push(chunk(i, 4096));
    // 16 KiB buffered make write() say "full": the source stops emitting, the rest waits in it.
    expect(src.isPaused()).toBe(true);
    await nextPass();
    expect(dst.writableLength).toBeLessThanOrEqual(16 * 1024 + 4096);
    dst.release();
    for (let i = 0; i < 50 && dst.bytes.length < 20 * 4096; i++) await nextPass();
    expect(src.isPaused()).toBe(false);
    expect(dst.bytes.length).toBe(20 * 4096);
  });

  it("ends the destination after the source's last bytes", async () => {
    const src = source();
    const dst = new Recorder();
    coalescingPipe(src, dst);
    await nextPass();
    src.push(chunk(1));
    src.push(chunk(2));
    src.push(null);
    await new Promise((resolve) => dst.once('finish', resolve));
    expect(dst.bytes.length).toBe(2048);
  });

  it('writes nothing more once the destination has closed', async () => {
    const src = source();
    const dst = new Recorder();
    const errors: Error[] = [];
    dst.on('error', (err) => errors.push(err));
    coalescingPipe(src, dst);
    await nextPass();
    src.push(chunk(1));
    await nextPass();
    dst.destroy();
    await nextPass();
    src.push(chunk(2));
    await nextPass();
    expect(dst.writes.length).toBe(1);
    expect(errors).toEqual([]);
    expect(src.listenerCount('data')).toBe(0);
    expect(src.isPaused()).toBe(true);
  });
});

/**
 * POP3 line framer for the pre-authentication dialogue: bytes in, lines out, nothing else.
 *
 * Incremental and pull-based: the session pushes chunks and the front pulls one line at a time, so when
 * a line starts something asynchronous (PASS, AUTH, STLS) the bytes behind it stay here untouched. After
 * a successful login they go to the upstream first and in order; after STLS they are thrown away
 * (RFC 2595 §3.1 / command injection).
 */

/** One frame: a line without its line ending, or the signal that the line limit was broken. */
export type Frame = { type: 'line'; line: Buffer } | { type: 'too-long' };

const LF = 0x0a;
const CR = 0x0d;

export class Pop3LineFramer {
  #buffer: Buffer = Buffer.alloc(0);
  #broken = false;
  readonly #maxLineLength: number;

  /** @param maxLineLength longest accepted line in bytes, not counting the line ending. */
  constructor(maxLineLength: number) {
    this.#maxLineLength = maxLineLength;
  }

  push(chunk: Buffer): void {
    if (this.#broken || chunk.length === 0) return;
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
  }

  /** Bytes received but not yet returned as a frame. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /**
   * The next complete line (CRLF, or a bare LF as some old clients send), or undefined when more bytes
   * are needed. Once the limit is broken `too-long` is returned for good: the session answers and
   * closes, so there is no resynchronising on a later line ending.
   */
  next(): Frame | undefined {
    if (this.#broken) return { type: 'too-long' };
    const end = this.#buffer.indexOf(LF);
    const max = this.#maxLineLength;
    if (end === -1) {
      // max+1 bytes may still be a legal line whose CR has arrived but whose LF has not.
      const pending = this.#buffer.length;
      const lastIsCr = pending > 0 && this.#buffer[pending - 1] === CR;
      if (pending > max + 1 || (pending === max + 1 && !lastIsCr)) return this.#break();
      return undefined;
    }
    const contentEnd = end > 0 && this.#buffer[end - 1] === CR ? end - 1 : end;
    if (contentEnd > max) return this.#break();
    const line = this.#buffer.subarray(0, contentEnd);
    this.#buffer = this.#buffer.subarray(end + 1);
    return { type: 'line', line };
  }

  /** Takes every unread byte out of the framer (for the relay, or to discard them). */
  takeRemainder(): Buffer {
    const rest = this.#buffer;
    this.#buffer = Buffer.alloc(0);
    return rest;
  }

  #break(): Frame {
    this.#broken = true;
    this.#buffer = Buffer.alloc(0);
    return { type: 'too-long' };
  }
}

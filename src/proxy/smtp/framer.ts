/**
 * SMTP line framer for the pre-authentication dialogue: bytes in, lines out, nothing else.
 *
 * Incremental and pull-based: the session pushes chunks and pulls one line at a time, so that when a
 * line starts something asynchronous (AUTH, STARTTLS) the bytes behind it stay here untouched. After
 * a successful AUTH they are handed to the upstream in order (RFC 2920 pipelining); after STARTTLS they
 * are thrown away (RFC 3207 §5, command injection).
 */

/** One frame: a line without its line ending, or the signal that the line limit was broken. */
export type Frame = { type: 'line'; line: Buffer } | { type: 'too-long' };

const LF = 0x0a;
const CR = 0x0d;

export class SmtpLineFramer {
  private buffer: Buffer = Buffer.alloc(0);
  private broken = false;

  /**
   * @param maxLineLength longest accepted line in bytes, not counting the line ending. RFC 5321 §4.5.3.1.4
   *   allows 512 with CRLF for commands, but RFC 4954 §4 lets AUTH responses be up to 12288 bytes.
   */
  constructor(private readonly maxLineLength: number) {}

  push(chunk: Buffer): void {
    if (this.broken || chunk.length === 0) return;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
  }

  /** Bytes received but not yet returned as a frame. */
  get buffered(): number {
    return this.buffer.length;
  }

  /**
   * The next complete line (CRLF, or a bare LF as many legacy devices send), or undefined when more
   * bytes are needed. Once the limit is broken, `too-long` is returned and the framer stays broken:
   * the session answers and closes, so there is no resynchronising on the next line ending.
   */
  next(): Frame | undefined {
    if (this.broken) return { type: 'too-long' };
    const end = this.buffer.indexOf(LF);
    if (end === -1) {
      // A buffer of max+1 bytes may still be a legal line whose CR has arrived but whose LF has not.
      const pending = this.buffer.length;
      const lastIsCr = pending > 0 && this.buffer[pending - 1] === CR;
      if (pending > this.maxLineLength + 1 || (pending === this.maxLineLength + 1 && !lastIsCr)) {
        return this.break();
      }
      return undefined;
    }
    const contentEnd = end > 0 && this.buffer[end - 1] === CR ? end - 1 : end;
    if (contentEnd > this.maxLineLength) return this.break();
    const line = this.buffer.subarray(0, contentEnd);
    this.buffer = this.buffer.subarray(end + 1);
    return { type: 'line', line };
  }

  /** Takes every unread byte out of the framer (for the relay, or to discard them). */
  takeRemainder(): Buffer {
    const rest = this.buffer;
    this.buffer = Buffer.alloc(0);
    return rest;
  }

  private break(): Frame {
    this.broken = true;
    this.buffer = Buffer.alloc(0);
    return { type: 'too-long' };
  }
}

/**
 * SMTP framer: bytes in, frames out, nothing else. Command lines, and after a local login (Graph
 * mode) the two kinds of message content: a DATA body up to `CRLF.CRLF` and a BDAT chunk of n bytes.
 *
 * Incremental and pull-based: the session pushes chunks and pulls one frame at a time, so that when a
 * line starts something asynchronous (AUTH, STARTTLS, a send) the bytes behind it stay here untouched.
 * After a successful AUTH they are handed to the upstream in order (RFC 2920 pipelining); after
 * STARTTLS they are thrown away (RFC 3207 §5, command injection).
 *
 * Message content stays Buffers from socket to sender (8-bit and binary bytes must arrive exactly) and
 * every byte is looked at once: a 35 MB body arrives as thousands of chunks, and re-scanning or
 * re-concatenating the whole of it per chunk would be quadratic.
 */

import type { BudgetShare } from '../shared/message-budget.js';

/** One frame: a line without its line ending, the signal that the line limit was broken, or content. */
export type Frame =
  | { type: 'line'; line: Buffer }
  | { type: 'too-long' }
  /**
   * A DATA body, dot-unstuffed, without the final `.CRLF`; empty and `tooLarge` past the limit, empty
   * and `overBudget` when the process's message memory ran out while it arrived.
   */
  | { type: 'data'; body: Buffer; tooLarge: boolean; overBudget: boolean }
  /** A BDAT chunk of exactly the announced size; empty when not kept (refused, or `overBudget`). */
  | { type: 'bdat'; chunk: Buffer; size: number; overBudget: boolean };

/** What the machine wants next. */
export type Expect =
  | { type: 'line' }
  /** A DATA body: at most `maxBytes` are kept, the rest is read and dropped. */
  | { type: 'data'; maxBytes: number }
  /** `size` bytes of BDAT content; `keep: false` reads and drops them (refused or too large). */
  | { type: 'bdat'; size: number; keep: boolean };

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;

/** A DATA body under way: the content so far and where the scan stands. */
interface DataProgress {
  kind: 'data';
  maxBytes: number;
  pieces: Buffer[];
  size: number;
  tooLarge: boolean;
  overBudget: boolean;
  /** The next unread byte begins a line (where a dot is either stuffing or the end). */
  atLineStart: boolean;
}

interface BdatProgress {
  kind: 'bdat';
  size: number;
  keep: boolean;
  overBudget: boolean;
  pieces: Buffer[];
  remaining: number;
}

export class SmtpFramer {
  private buffer: Buffer = Buffer.alloc(0);
  private broken = false;
  private content: DataProgress | BdatProgress | undefined;

  /**
   * @param maxLineLength longest accepted line in bytes, not counting the line ending. RFC 5321 §4.5.3.1.4
   *   allows 512 with CRLF for commands, but RFC 4954 §4 lets AUTH responses be up to 12288 bytes.
   *   Message content has no line limit (only the message size limit).
   */
  constructor(
    private readonly maxLineLength: number,
    /** The process's message memory (Graph mode); absent: content is limited by size only. */
    private readonly budget?: BudgetShare,
  ) {}

  /** Bytes of message content kept so far for the frame under way. */
  get keptBytes(): number {
    const c = this.content;
    if (!c) return 0;
    return c.pieces.reduce((n, p) => n + p.length, 0);
  }

  push(chunk: Buffer): void {
    if (this.broken || chunk.length === 0) return;
    // Only the unread tail is joined: content is taken out as it arrives, so this stays short.
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
  }

  /** Bytes received but not yet returned as (or consumed into) a frame. */
  get buffered(): number {
    return this.buffer.length;
  }

  /** The next frame of the expected kind (default: a line), or undefined when more bytes are needed. */
  next(expect: Expect = { type: 'line' }): Frame | undefined {
    if (this.broken) return { type: 'too-long' };
    switch (expect.type) {
      case 'line':
        this.content = undefined;
        return this.nextLine();
      case 'data':
        if (this.content?.kind !== 'data') {
          this.content = {
            kind: 'data',
            maxBytes: expect.maxBytes,
            pieces: [],
            size: 0,
            tooLarge: false,
            overBudget: false,
            atLineStart: true,
          };
        }
        return this.nextData(this.content);
      case 'bdat':
        if (this.content?.kind !== 'bdat') {
          this.content = {
            kind: 'bdat',
            size: expect.size,
            keep: expect.keep,
            overBudget: false,
            pieces: [],
            remaining: expect.size,
          };
        }
        return this.nextBdat(this.content);
    }
  }

  /**
   * The next complete line (CRLF, or a bare LF as many legacy devices send). Once the limit is broken,
   * `too-long` is returned and the framer stays broken: the session answers and closes, so there is no
   * resynchronising on the next line ending.
   */
  private nextLine(): Frame | undefined {
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

  /**
   * RFC 5321 §4.5.2: a line that starts with a dot had one added by the client; the line that is only
   * a dot ends the body. The CRLF before that line belongs to the body. Only CRLF ends a line here (a
   * bare LF inside content is content), so lookalikes such as `\n.\n` or `\r\n.\n` pass through.
   */
  private nextData(progress: DataProgress): Frame | undefined {
    const buf = this.buffer;
    let pos = 0;
    /** Start of the run of body bytes not yet taken out. */
    let run = 0;
    let atLineStart = progress.atLineStart;
    while (pos < buf.length) {
      if (atLineStart) {
        if (buf[pos] !== DOT) {
          atLineStart = false;
          continue;
        }
        // `.` at a line start: the end (".\r\n"), or a stuffed dot; wait for the bytes that decide.
        if (pos + 1 >= buf.length) break;
        if (buf[pos + 1] === CR) {
          if (pos + 2 >= buf.length) break;
          if (buf[pos + 2] === LF) {
            this.take(progress, buf.subarray(run, pos));
            this.buffer = buf.subarray(pos + 3);
            this.content = undefined;
            const dropped = progress.tooLarge || progress.overBudget;
            const body = dropped ? Buffer.alloc(0) : Buffer.concat(progress.pieces, progress.size);
            return { type: 'data', body, tooLarge: progress.tooLarge, overBudget: progress.overBudget };
          }
        }
        // The stuffing dot is dropped: the run so far ends before it, the next starts after it.
        this.take(progress, buf.subarray(run, pos));
        pos += 1;
        run = pos;
        atLineStart = false;
        continue;
      }
      const crlf = buf.indexOf('\r\n', pos, 'latin1');
      if (crlf === -1) {
        // A final CR may be the first half of a CRLF: it stays for the next chunk.
        pos = buf[buf.length - 1] === CR ? buf.length - 1 : buf.length;
        break;
      }
      pos = crlf + 2;
      atLineStart = true;
    }
    // Everything before `pos` is decided; the undecided tail (at most ".\r" or a CR) stays buffered.
    this.take(progress, buf.subarray(run, pos));
    this.buffer = buf.subarray(pos);
    progress.atLineStart = atLineStart;
    return undefined;
  }

  private take(progress: DataProgress, piece: Buffer): void {
    if (piece.length === 0) return;
    progress.size += piece.length;
    if (progress.size > progress.maxBytes) {
      // Past the limit the body is still read to its end (the client only listens after it), not kept.
      progress.tooLarge = true;
      progress.pieces = [];
      return;
    }
    if (progress.tooLarge || progress.overBudget) return;
    if (this.budget && !this.budget.reserve(piece.length)) {
      // Read to its end as well, then refused: the client may try again when memory is free.
      progress.overBudget = true;
      progress.pieces = [];
      return;
    }
    progress.pieces.push(piece);
  }

  /** RFC 3030: exactly `size` octets follow the BDAT line, whatever they contain. */
  private nextBdat(progress: BdatProgress): Frame | undefined {
    const n = Math.min(progress.remaining, this.buffer.length);
    if (n > 0) {
      if (progress.keep && this.budget && !this.budget.reserve(n)) {
        progress.keep = false;
        progress.overBudget = true;
        progress.pieces = [];
      }
      if (progress.keep) progress.pieces.push(this.buffer.subarray(0, n));
      this.buffer = this.buffer.subarray(n);
      progress.remaining -= n;
    }
    if (progress.remaining > 0) return undefined;
    this.content = undefined;
    const chunk = progress.keep ? Buffer.concat(progress.pieces, progress.size) : Buffer.alloc(0);
    return { type: 'bdat', chunk, size: progress.size, overBudget: progress.overBudget };
  }

  /** Takes every unread byte out of the framer (for the relay, or to discard them). */
  takeRemainder(): Buffer {
    const rest = this.buffer;
    this.buffer = Buffer.alloc(0);
    this.content = undefined;
    return rest;
  }

  private break(): Frame {
    this.broken = true;
    this.buffer = Buffer.alloc(0);
    return { type: 'too-long' };
  }
}

/** The name the pre-login tests and the relay path know it by. */
export { SmtpFramer as SmtpLineFramer };

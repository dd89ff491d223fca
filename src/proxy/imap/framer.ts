/**
 * IMAP framer (client -> server, before login): bytes in, whole commands out.
 *
 * A command is one or more CRLF-terminated lines; a line ending in `{n}` (synchronizing, the server
 * must answer `+`) or `{n+}` (LITERAL+, RFC 7888) is followed by exactly n raw bytes, then the command
 * continues on the next line. Limits are enforced here, as soon as they are broken, so that memory
 * stays bounded whatever the client sends. Pull-style: `push()` bytes, then call `next()` until it
 * returns undefined; stop calling it when the session changes hands (STARTTLS, login) and take
 * `takeRemainder()`, which returns every byte not yet handed out as part of a complete command.
 */
import type { FrontLimits } from '../shared/limits.js';

export interface FramePart {
  /** The line's bytes without CRLF (ends with the `{n}` marker when a literal follows). */
  line: Buffer;
  literal?: Buffer;
}

export interface Frame {
  parts: FramePart[];
}

export type FramingErrorKind =
  'line-too-long' | 'literal-too-large' | 'too-many-literals' | 'command-too-large';

export type FramerEvent =
  | { type: 'frame'; frame: Frame }
  /** A synchronizing literal was announced: the server must send a continuation request now. */
  | { type: 'continue'; size: number }
  /** A limit was broken; the framer is dead from here on. */
  | { type: 'error'; kind: FramingErrorKind };

export type FramerLimits = Pick<
  FrontLimits,
  'maxLineLength' | 'maxLiteralSize' | 'maxLiteralsPerCommand' | 'maxLiteralBytesPerCommand'
>;

const LF = 0x0a;
const CR = 0x0d;
/** `{123}` or `{123+}` at the very end of a line. More than 10 digits cannot be a sane size. */
const LITERAL_MARKER = /\{(\d{1,10})(\+?)\}$/;

export class ImapFramer {
  readonly #limits: FramerLimits;
  #buffer: Buffer = Buffer.alloc(0);
  /** Raw bytes of the command being assembled, so takeRemainder() can give them back. */
  #raw: Buffer[] = [];
  #parts: FramePart[] = [];
  #literal: { line: Buffer; size: number } | undefined;
  /** Literal bytes announced so far in the command being assembled. */
  #literalBytes = 0;
  #dead = false;

  constructor(limits: FramerLimits) {
    this.#limits = limits;
  }

  push(chunk: Buffer): void {
    if (this.#dead || chunk.length === 0) return;
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
  }

  /** Bytes held (complete or not), for backpressure decisions. */
  get buffered(): number {
    return this.#buffer.length + this.#raw.reduce((n, b) => n + b.length, 0);
  }

  next(): FramerEvent | undefined {
    for (;;) {
      if (this.#dead) return undefined;
      if (this.#literal) {
        const { size, line } = this.#literal;
        if (this.#buffer.length < size) return undefined;
        const literal = this.#buffer.subarray(0, size);
        this.#raw.push(literal);
        this.#buffer = this.#buffer.subarray(size);
        this.#parts.push({ line, literal });
        this.#literal = undefined;
        continue;
      }
      const lf = this.#buffer.indexOf(LF);
      if (lf < 0) {
        // One byte of slack: a line at the cap may be waiting for its LF after the CR.
        if (this.#buffer.length > this.#limits.maxLineLength + 1) return this.#fail('line-too-long');
        return undefined;
      }
      const end = lf > 0 && this.#buffer[lf - 1] === CR ? lf - 1 : lf;
      if (end > this.#limits.maxLineLength) return this.#fail('line-too-long');
      const line = this.#buffer.subarray(0, end);
      this.#raw.push(this.#buffer.subarray(0, lf + 1));
      this.#buffer = this.#buffer.subarray(lf + 1);
      // Only the tail can hold a marker; decoding it as latin1 keeps byte offsets honest.
      const marker = LITERAL_MARKER.exec(line.subarray(Math.max(0, line.length - 14)).toString('latin1'));
      if (!marker) {
        const frame: Frame = { parts: [...this.#parts, { line }] };
        this.#parts = [];
        this.#raw = [];
        this.#literalBytes = 0;
        return { type: 'frame', frame };
      }
      const size = Number(marker[1]);
      if (size > this.#limits.maxLiteralSize) return this.#fail('literal-too-large');
      if (this.#parts.length + 1 > this.#limits.maxLiteralsPerCommand) return this.#fail('too-many-literals');
      this.#literalBytes += size;
      if (this.#literalBytes > this.#limits.maxLiteralBytesPerCommand) return this.#fail('command-too-large');
      this.#literal = { line, size };
      if (marker[2] !== '+') return { type: 'continue', size };
    }
  }

  /** Everything not yet returned inside a complete frame, in arrival order. The framer is empty after. */
  takeRemainder(): Buffer {
    const out = Buffer.concat([...this.#raw, this.#buffer]);
    this.#raw = [];
    this.#parts = [];
    this.#literal = undefined;
    this.#literalBytes = 0;
    this.#buffer = Buffer.alloc(0);
    return out;
  }

  #fail(kind: FramingErrorKind): FramerEvent {
    this.#dead = true;
    this.#buffer = Buffer.alloc(0);
    this.#raw = [];
    this.#parts = [];
    return { type: 'error', kind };
  }
}

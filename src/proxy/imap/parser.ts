/**
 * IMAP command parser (RFC 9051 §9 grammar, the part a client uses before login): one frame in, one
 * typed command or a typed parse error out. Pure; never throws on any input.
 *
 * Arguments are atoms, quoted strings (`\"` and `\\` are the only escapes), literals (`{n}`/`{n+}`,
 * already cut out by the framer), NIL and parenthesized lists. Strings are decoded as UTF-8
 * (RFC 9051 allows UTF-8 in quoted strings; RFC 6855 in LOGIN).
 */
import type { Frame } from './framer.js';

export type Arg =
  { kind: 'atom'; value: string } | { kind: 'string'; value: string } | { kind: 'list'; items: Arg[] };

export interface Command {
  tag: string;
  /** Upper-cased command name. */
  name: string;
  args: Arg[];
}

export type ParseResult =
  | { ok: true; command: Command }
  /** `tag` is known when the line started with a valid tag: then the reply is tagged. */
  | { ok: false; tag?: string; message: string };

/** ATOM-CHAR: printable ASCII minus atom-specials ( ) { SP % * " \\ (`]` is allowed, as in astrings). */
function isAtomChar(c: string): boolean {
  const code = c.charCodeAt(0);
  return code > 0x20 && code < 0x7f && !'(){%*"\\'.includes(c);
}
/** Printable ASCII minus atom-specials and `+` (RFC 9051 `tag`); capped because we echo it. */
const TAG = /^[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]{1,64}$/;
const MAX_LIST_DEPTH = 8;

const utf8 = new TextDecoder('utf-8', { fatal: false });

type Token =
  | { kind: 'atom'; value: string }
  | { kind: 'string'; value: string }
  | { kind: 'open' }
  | { kind: 'close' }
  | { kind: 'space' };

class ParseError extends Error {}

/** Splits the frame into tokens; a literal becomes a string token in place of its `{n}` marker. */
function tokenize(frame: Frame): Token[] {
  const tokens: Token[] = [];
  for (const part of frame.parts) {
    const text = utf8.decode(part.line);
    let i = 0;
    const end = part.literal ? text.lastIndexOf('{') : text.length;
    while (i < end) {
      const c = text[i] as string;
      if (c === ' ') {
        tokens.push({ kind: 'space' });
        i += 1;
      } else if (c === '(') {
        tokens.push({ kind: 'open' });
        i += 1;
      } else if (c === ')') {
        tokens.push({ kind: 'close' });
        i += 1;
      } else if (c === '"') {
        let value = '';
        i += 1;
        for (;;) {
          if (i >= text.length) throw new ParseError('Unterminated quoted string');
          const q = text[i] as string;
          if (q === '"') break;
          if (q === '\\') {
            const escaped = text[i + 1];
            if (escaped !== '"' && escaped !== '\\') throw new ParseError('Invalid escape in quoted string');
            value += escaped;
            i += 2;
          } else {
            value += q;
            i += 1;
          }
        }
        i += 1;
        tokens.push({ kind: 'string', value });
      } else {
        let j = i;
        // Non-ASCII is not an ATOM-CHAR in RFC 3501, but clients send UTF-8 user names unquoted.
        while (j < end && (isAtomChar(text[j] as string) || (text.codePointAt(j) ?? 0) > 0x7f)) j += 1;
        if (j === i) throw new ParseError(`Unexpected character in command`);
        tokens.push({ kind: 'atom', value: text.slice(i, j) });
        i = j;
      }
    }
    if (part.literal) tokens.push({ kind: 'string', value: utf8.decode(part.literal) });
  }
  return tokens;
}

export function parseCommand(frame: Frame): ParseResult {
  const first = frame.parts[0]?.line ?? Buffer.alloc(0);
  const space = first.indexOf(0x20);
  const rawTag = (space < 0 ? first : first.subarray(0, space)).toString('latin1');
  if (!TAG.test(rawTag)) return { ok: false, message: 'Invalid tag' };
  const tag = rawTag;
  try {
    const tokens = tokenize(frame);
    // tokens: tag, space, name, then arguments.
    const name = tokens[2];
    if (tokens[1]?.kind !== 'space' || name?.kind !== 'atom') {
      // Untagged on purpose: a lone word on a line is what a password looks like when a client's
      // literal framing went wrong, and echoing it as a tag would print the password.
      return { ok: false, message: 'Missing command' };
    }
    const { args } = parseTop(tokens, 3);
    return { ok: true, command: { tag, name: name.value.toUpperCase(), args } };
  } catch (err) {
    if (err instanceof ParseError) return { ok: false, tag, message: err.message };
    return { ok: false, tag, message: 'Syntax error' };
  }
}

function parseTop(tokens: Token[], start: number): { args: Arg[] } {
  const args: Arg[] = [];
  let i = start;
  while (i < tokens.length) {
    if (tokens[i]?.kind !== 'space') throw new ParseError('Missing space between arguments');
    i += 1;
    const r = parseOne(tokens, i, 0);
    args.push(r.arg);
    i = r.next;
  }
  return { args };
}

function parseOne(tokens: Token[], i: number, depth: number): { arg: Arg; next: number } {
  const t = tokens[i];
  if (t === undefined) throw new ParseError('Trailing space');
  if (t.kind === 'space') throw new ParseError('Extra space');
  if (t.kind === 'close') throw new ParseError('Unexpected )');
  if (t.kind !== 'open') return { arg: t, next: i + 1 };
  if (depth + 1 > MAX_LIST_DEPTH) throw new ParseError('Lists nested too deeply');
  const items: Arg[] = [];
  let j = i + 1;
  if (tokens[j]?.kind === 'close') return { arg: { kind: 'list', items }, next: j + 1 };
  for (;;) {
    const r = parseOne(tokens, j, depth + 1);
    items.push(r.arg);
    j = r.next;
    const sep = tokens[j];
    if (sep?.kind === 'close') return { arg: { kind: 'list', items }, next: j + 1 };
    if (sep?.kind !== 'space') throw new ParseError('Unbalanced parenthesis');
    j += 1;
  }
}

/** The value of an astring argument (atom, quoted or literal), or undefined for a list. */
export function astring(arg: Arg | undefined): string | undefined {
  if (!arg || arg.kind === 'list') return undefined;
  return arg.value;
}

/**
 * A SASL response line (after `+`): the raw line, which must be base64 or `*`. It is not an IMAP
 * command, so it is not tokenized; a literal here is a client error.
 */
export function saslResponse(frame: Frame): { ok: true; text: string } | { ok: false } {
  if (frame.parts.length !== 1) return { ok: false };
  const line = (frame.parts[0] as { line: Buffer }).line;
  return { ok: true, text: line.toString('latin1').trim() };
}

/**
 * SMTP command parser for the mail transaction the proxy runs itself after a local login (Graph mode):
 * one line in, one typed command out. Pure.
 *
 * Lines arrive decoded as latin1 (one char per byte); addresses are turned back into bytes and read as
 * UTF-8, so SMTPUTF8 (RFC 6531) addresses survive and invalid UTF-8 is a syntax error. As before login,
 * nothing the client typed is copied into a reply.
 */

export type MailParam =
  | { kind: 'size'; size: number }
  | { kind: 'body'; value: '7BIT' | '8BITMIME' }
  | { kind: 'smtputf8' }
  /** RFC 4954 §5 AUTH=: accepted (AUTH was offered before login) and ignored. */
  | { kind: 'auth' };

export type TransactionCommand =
  | { kind: 'ehlo'; name: string }
  | { kind: 'helo'; name: string }
  | { kind: 'mail'; from: string; params: MailParam[] }
  | { kind: 'rcpt'; to: string }
  | { kind: 'data' }
  | { kind: 'bdat'; size: number; last: boolean }
  | { kind: 'rset' }
  | { kind: 'noop' }
  | { kind: 'quit' }
  | { kind: 'vrfy' }
  | { kind: 'auth' }
  | { kind: 'starttls' }
  /** A parameter we do not offer (DSN's NOTIFY, ORCPT, RET, ENVID; BODY=BINARYMIME; anything else). */
  | { kind: 'unsupported-param'; verb: 'MAIL' | 'RCPT'; dsn: boolean }
  /** MAIL with SIZE= above what the machine accepts is decided there; this is an unreadable SIZE. */
  | { kind: 'syntax-error'; verb: SyntaxVerb }
  | { kind: 'bad-address'; verb: 'MAIL' | 'RCPT' }
  | { kind: 'not-implemented' }
  | { kind: 'http' }
  | { kind: 'unknown' };

export type SyntaxVerb = 'EHLO' | 'HELO' | 'MAIL' | 'RCPT' | 'DATA' | 'BDAT' | 'RSET' | 'QUIT';

const NOT_IMPLEMENTED = new Set(['EXPN', 'HELP', 'ETRN', 'TURN', 'ATRN', 'SEND', 'SOML', 'SAML', 'XCLIENT']);
const HTTP_REQUEST = /^(?:OPTIONS|GET|HEAD|POST|PUT|DELETE|TRACE|CONNECT|PATCH) \S+ HTTP\/\d(?:\.\d)?$/i;
const HELO_NAME = /^[\x21-\x7e]{1,255}$/;
const DSN_PARAMS = new Set(['NOTIFY', 'ORCPT', 'RET', 'ENVID']);
/** `FROM:` / `TO:` then the path, optionally after a space (many devices send `MAIL FROM: <a@b>`). */
const PATH_ARG = /^(FROM|TO):[ \t]*(<[^>]*>)(.*)$/i;
/** RFC 3030: chunk sizes are decimal; 15 digits keeps them exact numbers (and far above any limit). */
const BDAT_ARGS = /^(\d{1,15})(?:[ \t]+(LAST))?$/i;
/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its brackets. */
const MAX_PATH = 256;
/**
 * A mailbox as RFC 5321 §4.1.2 has it, loosely: a dot-string or quoted local part, and a domain or an
 * address literal. Non-ASCII bytes (≥ 0x80) pass for RFC 6531; the UTF-8 check comes after.
 */
const MAILBOX =
  // eslint-disable-next-line no-control-regex -- control characters are exactly what it must exclude
  /^(?:"(?:[^"\\\x00-\x1f]|\\[\x20-\x7e])*"|[^\x00-\x20\x7f<>()[\]\\,;:@"]+)@(?:[^\x00-\x20\x7f<>()[\]\\,;:@"]+|\[[\x21-\x5a\x5e-\x7e]+\])$/;
/** A source route (`<@a,@b:user@d>`), which RFC 5321 §3.3 says to accept and ignore. */
const SOURCE_ROUTE = /^@[^:]*:/;

export function parseTransactionCommand(line: string): TransactionCommand {
  const trimmed = line.replace(/[ \t]+$/, '');
  if (HTTP_REQUEST.test(trimmed)) return { kind: 'http' };
  const space = trimmed.search(/[ \t]/);
  const verb = (space === -1 ? trimmed : trimmed.slice(0, space)).toUpperCase();
  const rest = space === -1 ? '' : trimmed.slice(space + 1).trim();

  switch (verb) {
    case 'EHLO':
    case 'HELO': {
      const name = rest.split(/[ \t]+/)[0];
      if (name === undefined || !HELO_NAME.test(name)) return { kind: 'syntax-error', verb };
      return { kind: verb === 'EHLO' ? 'ehlo' : 'helo', name };
    }
    case 'MAIL':
      return parseMail(rest);
    case 'RCPT':
      return parseRcpt(rest);
    case 'DATA':
      return rest === '' ? { kind: 'data' } : { kind: 'syntax-error', verb };
    case 'BDAT': {
      const m = BDAT_ARGS.exec(rest);
      if (!m) return { kind: 'syntax-error', verb };
      return { kind: 'bdat', size: Number(m[1]), last: m[2] !== undefined };
    }
    case 'RSET':
      return rest === '' ? { kind: 'rset' } : { kind: 'syntax-error', verb };
    case 'NOOP':
      // RFC 5321 §4.1.1.9: a NOOP argument is ignored.
      return { kind: 'noop' };
    case 'QUIT':
      return rest === '' ? { kind: 'quit' } : { kind: 'syntax-error', verb };
    case 'VRFY':
      return { kind: 'vrfy' };
    case 'AUTH':
      return { kind: 'auth' };
    case 'STARTTLS':
      return { kind: 'starttls' };
    case '':
      return { kind: 'unknown' };
    default:
      return NOT_IMPLEMENTED.has(verb) ? { kind: 'not-implemented' } : { kind: 'unknown' };
  }
}

function parseMail(rest: string): TransactionCommand {
  const m = PATH_ARG.exec(rest);
  if (!m || m[1]?.toUpperCase() !== 'FROM') return { kind: 'syntax-error', verb: 'MAIL' };
  const path = m[2] ?? '';
  const params: MailParam[] = [];
  for (const word of splitParams(m[3] ?? '')) {
    if (word === undefined) return { kind: 'syntax-error', verb: 'MAIL' };
    const eq = word.indexOf('=');
    const key = (eq === -1 ? word : word.slice(0, eq)).toUpperCase();
    const value = eq === -1 ? undefined : word.slice(eq + 1);
    if (key === 'SIZE') {
      if (value === undefined || !/^\d{1,15}$/.test(value)) return { kind: 'syntax-error', verb: 'MAIL' };
      params.push({ kind: 'size', size: Number(value) });
    } else if (key === 'BODY') {
      const body = value?.toUpperCase();
      if (body !== '7BIT' && body !== '8BITMIME')
        return { kind: 'unsupported-param', verb: 'MAIL', dsn: false };
      params.push({ kind: 'body', value: body });
    } else if (key === 'SMTPUTF8' && value === undefined) {
      params.push({ kind: 'smtputf8' });
    } else if (key === 'AUTH' && value !== undefined) {
      params.push({ kind: 'auth' });
    } else {
      return { kind: 'unsupported-param', verb: 'MAIL', dsn: DSN_PARAMS.has(key) };
    }
  }
  if (path === '<>') return { kind: 'mail', from: '', params };
  const from = mailbox(path);
  return from === undefined ? { kind: 'bad-address', verb: 'MAIL' } : { kind: 'mail', from, params };
}

function parseRcpt(rest: string): TransactionCommand {
  const m = PATH_ARG.exec(rest);
  if (!m || m[1]?.toUpperCase() !== 'TO') return { kind: 'syntax-error', verb: 'RCPT' };
  for (const word of splitParams(m[3] ?? '')) {
    if (word === undefined) return { kind: 'syntax-error', verb: 'RCPT' };
    const key = word.split('=')[0]?.toUpperCase() ?? '';
    return { kind: 'unsupported-param', verb: 'RCPT', dsn: DSN_PARAMS.has(key) };
  }
  const to = mailbox(m[2] ?? '');
  return to === undefined ? { kind: 'bad-address', verb: 'RCPT' } : { kind: 'rcpt', to };
}

/** The words after the path; `undefined` for text that is not `KEY[=VALUE]` after a space. */
function splitParams(text: string): (string | undefined)[] {
  if (text.trim() === '') return [];
  if (!/^[ \t]/.test(text)) return [undefined];
  return text
    .trim()
    .split(/[ \t]+/)
    .map((w) => (/^[A-Za-z0-9][A-Za-z0-9-]*(?:=[\x21-\x3c\x3e-\x7e]*)?$/.test(w) ? w : undefined));
}

/** The address inside `<...>` as UTF-8 text, or undefined if it is not a mailbox. */
function mailbox(path: string): string | undefined {
  if (path.length > MAX_PATH || !path.startsWith('<') || !path.endsWith('>')) return undefined;
  let inner = path.slice(1, -1);
  if (SOURCE_ROUTE.test(inner)) inner = inner.slice(inner.indexOf(':') + 1);
  if (!MAILBOX.test(inner)) return undefined;
  const bytes = Buffer.from(inner, 'latin1');
  const text = bytes.toString('utf8');
  // Invalid UTF-8 decodes to U+FFFD and does not round-trip.
  if (!Buffer.from(text, 'utf8').equals(bytes)) return undefined;
  return text;
}

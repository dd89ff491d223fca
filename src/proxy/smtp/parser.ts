/**
 * SMTP command parser for the pre-authentication dialogue: one line in, one typed command out. Pure.
 *
 * Only what the proxy answers itself is parsed in detail. Everything else is named just well enough to
 * pick the reply (`530` for mail commands, `502` for the ones we never offer, `500` for the unknown).
 * Nothing the client typed is ever copied into a reply, so a password sent in the wrong place cannot
 * be echoed back.
 */

export type SmtpCommand =
  | { kind: 'ehlo'; name: string }
  | { kind: 'helo'; name: string }
  | { kind: 'starttls' }
  | { kind: 'auth'; mechanism: string; initialResponse?: string }
  | { kind: 'rset' }
  | { kind: 'noop' }
  | { kind: 'quit' }
  /** MAIL, RCPT, DATA, BDAT: need authentication first. */
  | { kind: 'mail-transaction'; verb: 'MAIL' | 'RCPT' | 'DATA' | 'BDAT' }
  /** Real SMTP commands the proxy does not offer before login (VRFY, EXPN, HELP, ETRN, TURN, ...). */
  | { kind: 'not-implemented'; verb: string }
  /** An HTTP request line: somebody pointed a browser (or a cross-protocol attack) at us. */
  | { kind: 'http' }
  | { kind: 'empty' }
  | { kind: 'unknown' }
  /** A known command with arguments it cannot take; replies.ts says what the syntax is. */
  | { kind: 'syntax-error'; verb: 'EHLO' | 'HELO' | 'STARTTLS' | 'AUTH' };

const MAIL_VERBS = new Set(['MAIL', 'RCPT', 'DATA', 'BDAT']);
const NOT_IMPLEMENTED = new Set([
  'VRFY',
  'EXPN',
  'HELP',
  'ETRN',
  'TURN',
  'ATRN',
  'SEND',
  'SOML',
  'SAML',
  'XCLIENT',
]);
const HTTP_REQUEST = /^(?:OPTIONS|GET|HEAD|POST|PUT|DELETE|TRACE|CONNECT|PATCH) \S+ HTTP\/\d(?:\.\d)?$/i;
/** A domain or address literal as it may appear on the wire: printable ASCII, no spaces. */
const HELO_NAME = /^[\x21-\x7e]{1,255}$/;
/** SASL mechanism names (RFC 4422 §3.1): upper-case letters, digits, hyphen and underscore, up to 20. */
const MECHANISM = /^[A-Za-z0-9_-]{1,20}$/;

export function parseCommand(line: string): SmtpCommand {
  const trimmed = line.replace(/[ \t]+$/, '');
  if (trimmed.length === 0) return { kind: 'empty' };
  if (HTTP_REQUEST.test(trimmed)) return { kind: 'http' };

  const space = trimmed.search(/[ \t]/);
  const verb = (space === -1 ? trimmed : trimmed.slice(0, space)).toUpperCase();
  const rest = space === -1 ? '' : trimmed.slice(space + 1).trim();
  const args = rest.length === 0 ? [] : rest.split(/[ \t]+/);

  switch (verb) {
    case 'EHLO':
    case 'HELO': {
      // RFC 5321 §4.1.1.1 wants exactly one domain; legacy devices send "EHLO My Printer", so the
      // first word is taken and the rest ignored rather than refusing them.
      const name = args[0];
      if (name === undefined || !HELO_NAME.test(name)) {
        return { kind: 'syntax-error', verb };
      }
      return { kind: verb === 'EHLO' ? 'ehlo' : 'helo', name };
    }
    case 'STARTTLS':
      if (args.length > 0) return { kind: 'syntax-error', verb };
      return { kind: 'starttls' };
    case 'AUTH': {
      const mechanism = args[0];
      if (mechanism === undefined || args.length > 2 || !MECHANISM.test(mechanism)) {
        return { kind: 'syntax-error', verb };
      }
      const initialResponse = args[1];
      return initialResponse === undefined
        ? { kind: 'auth', mechanism: mechanism.toUpperCase() }
        : { kind: 'auth', mechanism: mechanism.toUpperCase(), initialResponse };
    }
    case 'RSET':
      return { kind: 'rset' };
    case 'NOOP':
      return { kind: 'noop' };
    case 'QUIT':
      return { kind: 'quit' };
    default:
      if (MAIL_VERBS.has(verb))
        return { kind: 'mail-transaction', verb: verb as 'MAIL' | 'RCPT' | 'DATA' | 'BDAT' };
      if (NOT_IMPLEMENTED.has(verb)) return { kind: 'not-implemented', verb };
      return { kind: 'unknown' };
  }
}

/**
 * POP3 command parser for the AUTHORIZATION state: one line in, one typed command out. Pure.
 *
 * RFC 1939 §3: a keyword of 3-4 characters, case-insensitive, then arguments separated by one space.
 * PASS is the exception every real server makes: the password is the whole rest of the line, spaces
 * included (RFC 1939 §7 notes "the server may treat spaces in the argument as part of the password").
 * Nothing the client typed is ever copied into a reply, so a password sent in the wrong place cannot
 * be echoed back.
 */

export type Pop3Command =
  | { kind: 'capa' }
  | { kind: 'user'; name: string }
  | { kind: 'pass'; password: string }
  /** `AUTH` alone: the RFC 1734 mechanism list that some old clients probe with. */
  | { kind: 'auth-list' }
  | { kind: 'auth'; mechanism: string; initialResponse?: string }
  | { kind: 'stls' }
  | { kind: 'quit' }
  | { kind: 'apop' }
  /** A TRANSACTION-state command (RFC 1939 §5, RFC 2449): valid only after login. */
  | { kind: 'needs-login' }
  /** An HTTP request line: somebody pointed a browser (or a cross-protocol attack) at us. */
  | { kind: 'http' }
  | { kind: 'empty' }
  | { kind: 'unknown' }
  /** A known command with arguments it cannot take; replies.ts says what the syntax is. */
  | { kind: 'syntax-error'; command: 'USER' | 'PASS' | 'AUTH' | 'STLS' };

const TRANSACTION = new Set(['STAT', 'LIST', 'RETR', 'DELE', 'NOOP', 'RSET', 'TOP', 'UIDL', 'LAST', 'UTF8']);
const HTTP_REQUEST = /^(?:OPTIONS|GET|HEAD|POST|PUT|DELETE|TRACE|CONNECT|PATCH) \S+ HTTP\/\d(?:\.\d)?$/i;
/** SASL mechanism names (RFC 4422 §3.1): upper-case letters, digits, hyphen and underscore, up to 20. */
const MECHANISM = /^[A-Za-z0-9_-]{1,20}$/;
/** RFC 5034 §4: base64, or `=` for an empty initial response. */
const INITIAL_RESPONSE = /^(?:[A-Za-z0-9+/]+={0,2}|=)$/;

export function parseCommand(line: string): Pop3Command {
  if (line.trim().length === 0) return { kind: 'empty' };
  if (HTTP_REQUEST.test(line.trimEnd())) return { kind: 'http' };

  const space = line.indexOf(' ');
  const keyword = (space === -1 ? line : line.slice(0, space)).toUpperCase();
  // Everything after the first space, as sent: PASS needs it verbatim.
  const rest = space === -1 ? '' : line.slice(space + 1);
  const args = rest.trim().length === 0 ? [] : rest.trim().split(/ +/);

  switch (keyword) {
    case 'CAPA':
      return { kind: 'capa' };
    case 'USER': {
      const name = rest.trim();
      if (name.length === 0) return { kind: 'syntax-error', command: 'USER' };
      return { kind: 'user', name };
    }
    case 'PASS':
      if (rest.length === 0) return { kind: 'syntax-error', command: 'PASS' };
      return { kind: 'pass', password: rest };
    case 'AUTH': {
      if (args.length === 0) return { kind: 'auth-list' };
      const mechanism = args[0] as string;
      const initialResponse = args[1];
      if (
        args.length > 2 ||
        !MECHANISM.test(mechanism) ||
        (initialResponse !== undefined && !INITIAL_RESPONSE.test(initialResponse))
      ) {
        return { kind: 'syntax-error', command: 'AUTH' };
      }
      return initialResponse === undefined
        ? { kind: 'auth', mechanism: mechanism.toUpperCase() }
        : { kind: 'auth', mechanism: mechanism.toUpperCase(), initialResponse };
    }
    case 'STLS':
      if (args.length > 0) return { kind: 'syntax-error', command: 'STLS' };
      return { kind: 'stls' };
    case 'QUIT':
      return { kind: 'quit' };
    case 'APOP':
      return { kind: 'apop' };
    default:
      return TRANSACTION.has(keyword) ? { kind: 'needs-login' } : { kind: 'unknown' };
  }
}

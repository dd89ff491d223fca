/**
 * A scriptable fake upstream POP3 server (think pop.gmail.com / outlook.office365.com) for tests: real
 * TLS with the test CA's certificate on 127.0.0.1 port 0, implicit (995) or STLS (110).
 *
 * Faithful where the proxy depends on it:
 * - greeting `+OK Gpop ready ...`; CAPA (RFC 2449) with `STLS` on a plain connection and, after TLS,
 *   `USER` and `SASL PLAIN XOAUTH2 OAUTHBEARER`; AUTH refused before STLS on a plain connection;
 * - AUTH XOAUTH2/OAUTHBEARER (RFC 5034) in two steps (`+ ` then the token) or with an initial
 *   response; tokens are checked with the fake authorization server (`checkAccessToken`) and must
 *   belong to the SASL user. A bad token gets Gmail's error challenge `+ <base64 {"status":"401",...}>`
 *   and only after the client's empty line (`AQ==` for OAUTHBEARER) the final `-ERR [AUTH] ...`;
 *   with `style: 'microsoft'` the `-ERR` comes at once, with Exchange's text;
 * - after login (TRANSACTION state, RFC 1939): STAT, LIST [n], UIDL [n], RETR n, TOP n k, DELE n,
 *   RSET, NOOP, CAPA, QUIT (which applies the deletions: `deleted`). Multi-line replies are
 *   dot-stuffed. Anything else gets `-ERR`.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { TLSSocket, createSecureContext } from 'node:tls';
import type { UpstreamServer } from '../../src/config/types.js';
import { getTestCerts } from './certs.js';

export interface FakePop3Options {
  tls: 'implicit' | 'starttls';
  /** Who an access token belongs to (the fake auth server's `checkAccessToken`). */
  checkAccessToken(token: string): string | undefined;
  /** Messages of the maildrop, message number = index + 1. CRLF line ends expected. */
  messages?: Buffer[];
  /** 'google' (default): error challenge before `-ERR`; 'microsoft': `-ERR` at once. */
  style?: 'google' | 'microsoft';
}

export interface Pop3AuthAttempt {
  mechanism: string;
  user: string;
  ok: boolean;
  /** The response came on the AUTH line. */
  initialResponse: boolean;
  /** What the client answered to the error challenge (undefined when there was none). */
  errorResponse?: string;
}

export interface FakePop3Server {
  readonly port: number;
  /** As a connection's `pop3` setting (host 127.0.0.1; trust `getTestCerts().caPem`). */
  readonly server: UpstreamServer;
  readonly authAttempts: Pop3AuthAttempt[];
  /** Every line received, per connection (AUTH payloads replaced by `<payload>`). */
  readonly commands: string[][];
  readonly connections: number;
  /** Message numbers deleted by a QUIT in the TRANSACTION state, in order. */
  readonly deleted: number[];
  /**
   * The next n AUTH exchanges end with this line instead of checking the token (e.g.
   * `-ERR [IN-USE] Mailbox locked`, `-ERR [SYS/PERM] POP disabled`).
   */
  failNextAuth(n: number, line: string): void;
  /** Destroys every open client connection (an upstream dying mid-session). */
  dropAll(): void;
  close(): Promise<void>;
}

export const GOOGLE_AUTH_FAILED = '-ERR [AUTH] Invalid credentials.';
export const MICROSOFT_AUTH_FAILED = '-ERR Authentication failure: unknown user name or bad password.';
const GMAIL_ERROR = Buffer.from(
  JSON.stringify({ status: '401', schemes: 'bearer mac', scope: 'https://mail.google.com/' }),
).toString('base64');

interface Conn {
  socket: Socket;
  secure: boolean;
  user: string | undefined;
  buffer: Buffer;
  /** When set, the next line goes here instead of the command dispatcher. */
  lineHandler: ((line: string) => void) | undefined;
  deleted: Set<number>;
  log: string[];
}

/** RFC 1939 §3: a multi-line body, each line starting with `.` gets one more, then `.` alone. */
export function dotStuff(message: Buffer): Buffer {
  const text = message.toString('latin1');
  const withEnd = text.endsWith('\r\n') || text.length === 0 ? text : `${text}\r\n`;
  const stuffed = withEnd.replace(/^\./gm, '..');
  return Buffer.from(`${stuffed}.\r\n`, 'latin1');
}

function decodeSasl(mechanism: string, base64: string): { user: string; token: string } | undefined {
  const SOH = String.fromCharCode(1);
  const text = Buffer.from(base64, 'base64').toString('utf8');
  if (!text.endsWith(SOH + SOH)) return undefined;
  const fields = text.slice(0, -2).split(SOH);
  let user: string | undefined;
  if (mechanism === 'XOAUTH2') {
    user = fields.shift()?.match(/^user=(.*)$/)?.[1];
  } else {
    // RFC 7628: GS2 header `n,a=user,` then key=value pairs.
    const gs2 = /^n,a=([^,]*),$/.exec(fields.shift() ?? '');
    user = gs2?.[1]?.replace(/=2C/g, ',').replace(/=3D/g, '=');
  }
  const auth = fields.find((f) => f.startsWith('auth=Bearer '));
  if (user === undefined || auth === undefined) return undefined;
  return { user, token: auth.slice('auth=Bearer '.length) };
}

export async function startFakePop3Server(options: FakePop3Options): Promise<FakePop3Server> {
  const certs = getTestCerts();
  const secureContext = createSecureContext({ cert: certs.certPem, key: certs.keyPem });
  const messages = options.messages ?? [];
  const authAttempts: Pop3AuthAttempt[] = [];
  const commands: string[][] = [];
  const deleted: number[] = [];
  const live = new Set<Conn>();
  let connections = 0;
  let scriptedFailures: { n: number; line: string } = { n: 0, line: '' };

  const write = (c: Conn, text: string | Buffer): void => {
    if (!c.socket.destroyed) c.socket.write(text);
  };
  const line = (c: Conn, text: string): void => write(c, `${text}\r\n`);

  const attach = (c: Conn): void => {
    c.socket.on('data', (chunk: Buffer) => {
      c.buffer = Buffer.concat([c.buffer, chunk]);
      drain(c);
    });
    c.socket.on('error', () => undefined);
    c.socket.on('close', () => live.delete(c));
  };

  const drain = (c: Conn): void => {
    for (;;) {
      if (c.socket.destroyed) return;
      const lf = c.buffer.indexOf(0x0a);
      if (lf < 0) return;
      const text = c.buffer.subarray(0, lf).toString('utf8').replace(/\r$/, '');
      c.buffer = c.buffer.subarray(lf + 1);
      const handler = c.lineHandler;
      if (handler) {
        c.lineHandler = undefined;
        c.log.push(text === '' || text === '*' || text === 'AQ==' ? text : '<payload>');
        handler(text);
      } else {
        c.log.push(/^AUTH \S+ \S+/i.test(text) ? text.replace(/^(AUTH \S+) \S+/i, '$1 <payload>') : text);
        command(c, text);
      }
    }
  };

  const finishAuth = (c: Conn, mechanism: string, payload: string, initialResponse: boolean): void => {
    if (scriptedFailures.n > 0) {
      scriptedFailures.n -= 1;
      authAttempts.push({ mechanism, user: '', ok: false, initialResponse });
      line(c, scriptedFailures.line);
      return;
    }
    const decoded = decodeSasl(mechanism, payload);
    const owner = decoded ? options.checkAccessToken(decoded.token) : undefined;
    const ok = decoded !== undefined && owner !== undefined && owner === decoded.user.toLowerCase();
    const attempt: Pop3AuthAttempt = { mechanism, user: decoded?.user ?? '', ok, initialResponse };
    authAttempts.push(attempt);
    if (ok) {
      c.user = decoded.user;
      line(c, '+OK Welcome.');
      return;
    }
    if (options.style === 'microsoft') {
      line(c, MICROSOFT_AUTH_FAILED);
      return;
    }
    line(c, `+ ${GMAIL_ERROR}`);
    c.lineHandler = (answer) => {
      attempt.errorResponse = answer;
      line(c, GOOGLE_AUTH_FAILED);
    };
  };

  const capa = (c: Conn): void => {
    const caps = ['+OK Capability list follows'];
    if (c.user)
      caps.push('USER', 'RESP-CODES', 'EXPIRE 0', 'LOGIN-DELAY 300', 'TOP', 'UIDL', 'X-GOOGLE-RICO');
    else {
      caps.push('RESP-CODES', 'EXPIRE 0', 'LOGIN-DELAY 300', 'TOP', 'UIDL');
      if (c.secure) caps.push('USER', 'SASL PLAIN XOAUTH2 OAUTHBEARER');
      else caps.push('STLS');
    }
    caps.push('.');
    line(c, caps.join('\r\n'));
  };

  const msgNumber = (c: Conn, arg: string | undefined): number | undefined => {
    const n = arg !== undefined && /^\d{1,9}$/.test(arg) ? Number(arg) : NaN;
    if (!(n >= 1 && n <= messages.length) || c.deleted.has(n)) {
      line(c, '-ERR [SYS/PERM] There is no message with that number.');
      return undefined;
    }
    return n;
  };

  const alive = (c: Conn): number[] => messages.map((_m, i) => i + 1).filter((n) => !c.deleted.has(n));

  const command = (c: Conn, text: string): void => {
    const [verbRaw, ...args] = text.split(' ');
    const verb = (verbRaw ?? '').toUpperCase();
    if (verb === 'QUIT') {
      if (c.user) deleted.push(...[...c.deleted].sort((a, b) => a - b));
      line(c, '+OK Farewell.');
      c.socket.end();
      return;
    }
    if (verb === 'CAPA') return capa(c);
    if (verb === 'NOOP' && c.user) return line(c, '+OK');
    if (!c.user) {
      switch (verb) {
        case 'STLS': {
          if (c.secure) return line(c, '-ERR TLS already active');
          line(c, '+OK Begin TLS negotiation');
          const plain = c.socket;
          plain.removeAllListeners('data');
          c.buffer = Buffer.alloc(0);
          const tls = new TLSSocket(plain, { isServer: true, secureContext });
          c.socket = tls;
          c.secure = true;
          attach(c);
          return;
        }
        case 'AUTH': {
          const mechanism = (args[0] ?? '').toUpperCase();
          if (!c.secure) return line(c, '-ERR [AUTH] Use STLS first.');
          if (mechanism !== 'XOAUTH2' && mechanism !== 'OAUTHBEARER') {
            return line(c, '-ERR Unsupported mechanism.');
          }
          if (args[1] !== undefined) return finishAuth(c, mechanism, args[1], true);
          line(c, '+ ');
          c.lineHandler = (payload) => {
            if (payload === '*') return line(c, '-ERR Cancelled.');
            finishAuth(c, mechanism, payload, false);
          };
          return;
        }
        default:
          return line(c, '-ERR [AUTH] Not logged in.');
      }
    }
    switch (verb) {
      case 'STAT': {
        const live = alive(c);
        const size = live.reduce((sum, n) => sum + (messages[n - 1] as Buffer).length, 0);
        return line(c, `+OK ${live.length} ${size}`);
      }
      case 'LIST':
      case 'UIDL': {
        const value = (n: number): string =>
          verb === 'LIST' ? String((messages[n - 1] as Buffer).length) : `uid-${n}`;
        if (args[0] !== undefined) {
          const n = msgNumber(c, args[0]);
          if (n !== undefined) line(c, `+OK ${n} ${value(n)}`);
          return;
        }
        return line(c, ['+OK', ...alive(c).map((n) => `${n} ${value(n)}`), '.'].join('\r\n'));
      }
      case 'RETR': {
        const n = msgNumber(c, args[0]);
        if (n === undefined) return;
        const message = messages[n - 1] as Buffer;
        write(c, Buffer.concat([Buffer.from(`+OK ${message.length} octets\r\n`), dotStuff(message)]));
        return;
      }
      case 'TOP': {
        const n = msgNumber(c, args[0]);
        if (n === undefined) return;
        const k = Number(args[1] ?? '0');
        const text = (messages[n - 1] as Buffer).toString('latin1');
        const split = text.indexOf('\r\n\r\n');
        const head = split < 0 ? text : text.slice(0, split + 4);
        const body =
          split < 0
            ? ''
            : text
                .slice(split + 4)
                .split('\r\n')
                .slice(0, k)
                .join('\r\n');
        write(c, Buffer.concat([Buffer.from('+OK\r\n'), dotStuff(Buffer.from(head + body, 'latin1'))]));
        return;
      }
      case 'DELE': {
        const n = msgNumber(c, args[0]);
        if (n === undefined) return;
        c.deleted.add(n);
        return line(c, `+OK message ${n} deleted`);
      }
      case 'RSET':
        c.deleted.clear();
        return line(c, '+OK');
      default:
        return line(c, '-ERR Unknown command.');
    }
  };

  const onConnection = (socket: Socket, secure: boolean): void => {
    connections += 1;
    const c: Conn = {
      socket,
      secure,
      user: undefined,
      buffer: Buffer.alloc(0),
      lineHandler: undefined,
      deleted: new Set(),
      log: [],
    };
    commands.push(c.log);
    live.add(c);
    attach(c);
    line(c, '+OK Gpop ready for requests from 127.0.0.1 x1mb12345pop');
  };

  const server: Server = createServer((raw) => {
    if (options.tls === 'implicit') {
      const tls = new TLSSocket(raw, { isServer: true, secureContext });
      tls.on('error', () => undefined);
      tls.once('secure', () => onConnection(tls, true));
    } else {
      onConnection(raw, false);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    server: { host: '127.0.0.1', port, tls: options.tls },
    authAttempts,
    commands,
    deleted,
    get connections() {
      return connections;
    },
    failNextAuth(n, text) {
      scriptedFailures = { n, line: text };
    },
    dropAll() {
      for (const c of live) c.socket.destroy();
    },
    async close() {
      for (const c of live) c.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A scriptable fake upstream IMAP server (think imap.gmail.com) for tests: real TLS with the test CA's
 * certificate on 127.0.0.1 port 0, implicit (993) or STARTTLS (143).
 *
 * Faithful where the proxy depends on it:
 * - greeting with `[CAPABILITY ...]` (optional), `STARTTLS` required before AUTHENTICATE on a plain
 *   connection, `AUTH=XOAUTH2 AUTH=OAUTHBEARER SASL-IR`;
 * - XOAUTH2/OAUTHBEARER tokens are checked with the fake authorization server (`checkAccessToken`) and
 *   must belong to the SASL user; a bad token gets Gmail's error continuation
 *   `+ <base64 {"status":"401",...}>`, and only after the client's empty line (`AQ==` for OAUTHBEARER)
 *   the final `NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)`; `refuseLoginWith` answers
 *   every AUTHENTICATE with a NO of your choice instead (Dovecot's `NO [UNAVAILABLE] ...`);
 * - after login: CAPABILITY, NOOP, ID, NAMESPACE, LIST, ENABLE, SELECT/EXAMINE INBOX, FETCH and UID
 *   FETCH with BODY[] / BODY.PEEK[] / RFC822 / FLAGS / UID / RFC822.SIZE, IDLE (+ DONE), LOGOUT;
 *   anything else gets `BAD`. `pushUntagged()` sends an untagged line to every IDLE-ing client;
 * - optionally COMPRESS=DEFLATE (RFC 4978), to show that compression passes through the relay.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { TLSSocket, createSecureContext } from 'node:tls';
import { constants as zlibConstants, createDeflateRaw, createInflateRaw, type DeflateRaw } from 'node:zlib';
import type { UpstreamServer } from '../../src/config/types.js';
import { getTestCerts } from './certs.js';

export interface FakeImapOptions {
  tls: 'implicit' | 'starttls';
  /** Who an access token belongs to (the fake auth server's `checkAccessToken`). */
  checkAccessToken(token: string): string | undefined;
  /** Messages of INBOX, sequence number = index + 1. */
  messages?: Buffer[];
  /** Send capabilities in the greeting (default true, like Gmail). */
  capabilityInGreeting?: boolean;
  /** Put `[CAPABILITY ...]` in the tagged OK of AUTHENTICATE (default true, like Gmail). */
  capabilityInLoginOk?: boolean;
  /** Advertise SASL-IR (default true). */
  saslIr?: boolean;
  /** Advertise and accept COMPRESS=DEFLATE after login (default false). */
  compress?: boolean;
}

export interface ImapAuthAttempt {
  mechanism: string;
  user: string;
  ok: boolean;
  /** The initial response came on the AUTHENTICATE line. */
  saslIr: boolean;
  /** What the client answered to the error continuation (undefined when there was none). */
  errorResponse?: string;
}

export interface FakeImapServer {
  readonly port: number;
  /** As a connection's `imap` setting (host 127.0.0.1; trust `getTestCerts().caPem`). */
  readonly server: UpstreamServer;
  readonly authAttempts: ImapAuthAttempt[];
  /** Every command line received (tags stripped, literals not included), per connection. */
  readonly commands: string[][];
  readonly connections: number;
  /** Sessions that switched to COMPRESS=DEFLATE. */
  readonly compressedSessions: number;
  /** Capabilities sent after login (COMPRESS=DEFLATE only with `compress`). */
  readonly postLoginCapabilities: string;
  /** Sends an untagged response to every client currently in IDLE; resolves with how many got it. */
  pushUntagged(line: string): number;
  /** Number of clients currently in IDLE. */
  readonly idling: number;
  /** Refuse every token (as if the provider disabled IMAP for the user); mutable at run time. */
  refuseAllTokens: boolean;
  /**
   * When set, every AUTHENTICATE is answered at once (no error continuation) with `tag NO <this>`, as
   * Dovecot does, e.g. `[UNAVAILABLE] Temporary authentication failure` when its token check fails;
   * mutable at run time.
   */
  refuseLoginWith: string | undefined;
  /** Destroys every open client connection (an upstream dying mid-session). */
  dropAll(): void;
  close(): Promise<void>;
}

export const POST_LOGIN_CAPABILITIES =
  'IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE APPENDLIMIT=35651584';
const WITHOUT_COMPRESS = POST_LOGIN_CAPABILITIES.replace(' COMPRESS=DEFLATE', '');

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
  idleTag: string | undefined;
  log: string[];
  /** After COMPRESS DEFLATE: responses go through this (RFC 4978). */
  deflate: DeflateRaw | undefined;
  onData: ((chunk: Buffer) => void) | undefined;
}

export async function startFakeImapServer(options: FakeImapOptions): Promise<FakeImapServer> {
  const certs = getTestCerts();
  const secureContext = createSecureContext({ cert: certs.certPem, key: certs.keyPem });
  const messages = options.messages ?? [];
  const authAttempts: ImapAuthAttempt[] = [];
  const commands: string[][] = [];
  const live = new Set<Conn>();
  let connections = 0;
  let compressedSessions = 0;
  const postLogin = options.compress ? POST_LOGIN_CAPABILITIES : WITHOUT_COMPRESS;

  const preAuthCaps = (c: Conn): string => {
    const caps = [
      'IMAP4rev1',
      'UNSELECT',
      'IDLE',
      'NAMESPACE',
      'QUOTA',
      'ID',
      'XLIST',
      'CHILDREN',
      'X-GM-EXT-1',
    ];
    if (options.saslIr !== false) caps.push('SASL-IR');
    if (c.secure) caps.push('AUTH=XOAUTH2', 'AUTH=PLAIN', 'AUTH=PLAIN-CLIENTTOKEN', 'AUTH=OAUTHBEARER');
    else caps.push('STARTTLS', 'LOGINDISABLED');
    return caps.join(' ');
  };

  const write = (c: Conn, text: string | Buffer): void => {
    if (c.socket.destroyed) return;
    if (c.deflate) {
      c.deflate.write(text);
      c.deflate.flush(zlibConstants.Z_SYNC_FLUSH);
    } else {
      c.socket.write(text);
    }
  };

  /** RFC 4978: from right after the tagged OK, both directions are raw DEFLATE streams. */
  const startCompression = (c: Conn): void => {
    const deflate = createDeflateRaw();
    const inflate = createInflateRaw();
    deflate.pipe(c.socket);
    if (c.onData) c.socket.off('data', c.onData);
    const onData = c.onData;
    const rest = c.buffer;
    c.buffer = Buffer.alloc(0);
    c.socket.pipe(inflate);
    if (onData) inflate.on('data', onData);
    inflate.on('error', () => c.socket.destroy());
    if (rest.length > 0) inflate.write(rest);
    c.deflate = deflate;
    compressedSessions += 1;
  };

  const greet = (c: Conn): void => {
    const code = options.capabilityInGreeting === false ? '' : `[CAPABILITY ${preAuthCaps(c)}] `;
    write(c, `* OK ${code}Gimap ready for requests from 127.0.0.1\r\n`);
  };

  const attach = (c: Conn): void => {
    c.onData = (chunk: Buffer): void => {
      c.buffer = Buffer.concat([c.buffer, chunk]);
      drain(c);
    };
    c.socket.on('data', c.onData);
    c.socket.on('error', () => undefined);
    c.socket.on('close', () => live.delete(c));
  };

  /** Splits lines; a command line ending in {n}/{n+} swallows n bytes (contents not needed here). */
  const drain = (c: Conn): void => {
    for (;;) {
      const lf = c.buffer.indexOf(0x0a);
      if (lf < 0) return;
      let line = c.buffer.subarray(0, lf).toString('utf8').replace(/\r$/, '');
      let consumed = lf + 1;
      const lit = /\{(\d+)(\+?)\}$/.exec(line);
      if (lit && !c.lineHandler) {
        const size = Number(lit[1]);
        if (lit[2] !== '+' && c.buffer.length === consumed) write(c, '+ go ahead\r\n');
        if (c.buffer.length < consumed + size) return;
        // Glue the rest of the command (not needed for the commands we serve, but keep framing right).
        const rest = c.buffer.subarray(consumed + size);
        const restLf = rest.indexOf(0x0a);
        if (restLf < 0) return;
        line = `${line.slice(0, lit.index)}<literal>${rest.subarray(0, restLf).toString('utf8').replace(/\r$/, '')}`;
        consumed += size + restLf + 1;
      }
      c.buffer = c.buffer.subarray(consumed);
      const handler = c.lineHandler;
      if (handler) {
        c.lineHandler = undefined;
        handler(line);
      } else {
        onCommand(c, line);
      }
      if (c.socket.destroyed) return;
      // STARTTLS takes over the socket: stop reading plaintext (and drop it: injection defence).
      if (
        c.socket !== undefined &&
        c.buffer.length > 0 &&
        c.lineHandler === undefined &&
        c.idleTag === undefined
      ) {
        continue;
      }
    }
  };

  const authenticate = (c: Conn, tag: string, mechanism: string, initial: string | undefined): void => {
    const finish = (payload: string, saslIr: boolean): void => {
      const text = Buffer.from(payload, 'base64').toString('utf8');
      let user = '';
      let token = '';
      const fields = text.split('\x01');
      const bearer = fields.find((f) => f.startsWith('auth=Bearer '));
      token = bearer?.slice('auth=Bearer '.length) ?? '';
      if (mechanism === 'XOAUTH2') {
        user = fields[0]?.startsWith('user=') ? fields[0].slice(5) : '';
      } else {
        // GS2 header "n,a=<authzid>," (RFC 7628 / RFC 5801).
        user =
          /^n,a=([^,]*),/
            .exec(fields[0] ?? '')?.[1]
            ?.replace(/=2C/g, ',')
            .replace(/=3D/g, '=') ?? '';
      }
      if (fake.refuseLoginWith !== undefined) {
        authAttempts.push({ mechanism, user, ok: false, saslIr });
        write(c, `${tag} NO ${fake.refuseLoginWith}\r\n`);
        return;
      }
      const owner = token ? options.checkAccessToken(token) : undefined;
      const ok = !fake.refuseAllTokens && owner !== undefined && owner.toLowerCase() === user.toLowerCase();
      if (ok) {
        c.user = user;
        authAttempts.push({ mechanism, user, ok, saslIr });
        const code = options.capabilityInLoginOk === false ? '' : `[CAPABILITY ${postLogin}] `;
        write(c, `${tag} OK ${code}${user} authenticated (Success)\r\n`);
        return;
      }
      // Gmail: error continuation first; the final NO only after the client's answer.
      write(c, `+ ${GMAIL_ERROR}\r\n`);
      c.lineHandler = (answer) => {
        authAttempts.push({ mechanism, user, ok: false, saslIr, errorResponse: answer });
        const expected = mechanism === 'XOAUTH2' ? '' : 'AQ==';
        if (answer !== expected) write(c, `${tag} BAD Invalid SASL argument. (Failure)\r\n`);
        else write(c, `${tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n`);
      };
    };
    if (!c.secure) {
      write(c, `${tag} NO [PRIVACYREQUIRED] STARTTLS first\r\n`);
      return;
    }
    if (mechanism !== 'XOAUTH2' && mechanism !== 'OAUTHBEARER') {
      write(c, `${tag} NO [CANNOT] Unsupported mechanism\r\n`);
      return;
    }
    if (initial !== undefined) {
      finish(initial, true);
      return;
    }
    write(c, '+ \r\n');
    c.lineHandler = (line) => finish(line, false);
  };

  const fetch = (c: Conn, tag: string, uidMode: boolean, set: string, items: string): void => {
    const wanted = items.toUpperCase();
    const seqs: number[] = [];
    for (const range of set.split(',')) {
      const [a, b] = range.split(':');
      const start = a === '*' ? messages.length : Number(a);
      const end = b === undefined ? start : b === '*' ? messages.length : Number(b);
      for (let n = Math.min(start, end); n <= Math.max(start, end) && n <= messages.length; n++) seqs.push(n);
    }
    for (const n of seqs) {
      const body = messages[n - 1] as Buffer;
      const parts: (string | Buffer)[] = [`* ${n} FETCH (UID ${n}`];
      if (wanted.includes('FLAGS')) parts.push(' FLAGS (\\Seen)');
      if (wanted.includes('RFC822.SIZE')) parts.push(` RFC822.SIZE ${body.length}`);
      if (wanted.includes('BODY[]') || wanted.includes('BODY.PEEK[]') || /\bRFC822\b(?!\.)/.test(wanted)) {
        parts.push(` BODY[] {${body.length}}\r\n`, body);
      }
      parts.push(')\r\n');
      for (const p of parts) write(c, p);
    }
    write(c, `${tag} OK ${uidMode ? 'UID FETCH' : 'FETCH'} completed (Success)\r\n`);
  };

  const onCommand = (c: Conn, line: string): void => {
    const m = /^(\S+) (\S+)(?: (.*))?$/.exec(line);
    if (!m) {
      write(c, '* BAD Invalid tag\r\n');
      return;
    }
    const tag = m[1] as string;
    const name = (m[2] as string).toUpperCase();
    const rest = m[3] ?? '';
    c.log.push(`${name}${rest ? ` ${name === 'AUTHENTICATE' ? rest.split(' ')[0] : rest}` : ''}`);
    switch (name) {
      case 'CAPABILITY':
        write(
          c,
          `* CAPABILITY ${c.user ? postLogin : preAuthCaps(c)}\r\n${tag} OK Thats all she wrote! (Success)\r\n`,
        );
        return;
      case 'NOOP':
        write(c, `${tag} OK Success\r\n`);
        return;
      case 'LOGOUT':
        write(c, `* BYE LOGOUT Requested\r\n${tag} OK 73 good day (Success)\r\n`);
        c.socket.end();
        return;
      case 'ID':
        write(c, `* ID ("name" "GImap" "vendor" "Google, Inc.")\r\n${tag} OK Success\r\n`);
        return;
      case 'STARTTLS': {
        if (c.secure || options.tls !== 'starttls') {
          write(c, `${tag} BAD STARTTLS not available\r\n`);
          return;
        }
        write(c, `${tag} OK Begin TLS negotiation now\r\n`);
        const plain = c.socket;
        plain.removeAllListeners('data');
        c.buffer = Buffer.alloc(0);
        const secure = new TLSSocket(plain, { isServer: true, secureContext });
        secure.once('secure', () => {
          c.socket = secure;
          c.secure = true;
          attach(c);
        });
        secure.on('error', () => undefined);
        return;
      }
      case 'AUTHENTICATE': {
        const [mechanism, initial] = rest.split(' ');
        authenticate(c, tag, (mechanism ?? '').toUpperCase(), initial);
        return;
      }
      case 'LOGIN':
        write(c, `${tag} NO [ALERT] Application-specific password required\r\n`);
        return;
    }
    if (!c.user) {
      write(c, `${tag} BAD Command not valid in this state\r\n`);
      return;
    }
    switch (name) {
      case 'NAMESPACE':
        write(c, `* NAMESPACE (("" "/")) NIL NIL\r\n${tag} OK Success\r\n`);
        return;
      case 'LIST':
        write(c, `* LIST (\\HasNoChildren) "/" "INBOX"\r\n${tag} OK Success\r\n`);
        return;
      case 'ENABLE':
        write(c, `* ENABLED\r\n${tag} OK Success\r\n`);
        return;
      case 'SELECT':
      case 'EXAMINE':
        write(
          c,
          `* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen)\r\n* OK [PERMANENTFLAGS (\\Seen)] Flags permitted.\r\n` +
            `* OK [UIDVALIDITY 1] UIDs valid.\r\n* ${messages.length} EXISTS\r\n* 0 RECENT\r\n` +
            `* OK [UIDNEXT ${messages.length + 1}] Predicted next UID.\r\n` +
            `${tag} OK [${name === 'SELECT' ? 'READ-WRITE' : 'READ-ONLY'}] INBOX selected. (Success)\r\n`,
        );
        return;
      case 'FETCH': {
        const fm = /^(\S+) (.*)$/.exec(rest);
        fetch(c, tag, false, fm?.[1] ?? '', fm?.[2] ?? '');
        return;
      }
      case 'UID': {
        const um = /^FETCH (\S+) (.*)$/i.exec(rest);
        if (!um) break;
        fetch(c, tag, true, um[1] as string, um[2] as string);
        return;
      }
      case 'IDLE':
        c.idleTag = tag;
        write(c, '+ idling\r\n');
        c.lineHandler = (done) => {
          c.idleTag = undefined;
          write(
            c,
            done.toUpperCase() === 'DONE'
              ? `${tag} OK IDLE terminated (Success)\r\n`
              : `${tag} BAD Expected DONE\r\n`,
          );
        };
        return;
      case 'CLOSE':
      case 'UNSELECT':
        write(c, `${tag} OK Returned to authenticated state. (Success)\r\n`);
        return;
      case 'COMPRESS':
        if (!options.compress || rest.toUpperCase() !== 'DEFLATE' || c.deflate) {
          write(c, `${tag} NO Compression not available\r\n`);
          return;
        }
        write(c, `${tag} OK DEFLATE active\r\n`);
        startCompression(c);
        return;
    }
    write(c, `${tag} BAD Unknown command ${name}\r\n`);
  };

  const onSocket = (socket: Socket, secure: boolean): void => {
    connections += 1;
    const log: string[] = [];
    commands.push(log);
    const c: Conn = {
      socket,
      secure,
      user: undefined,
      buffer: Buffer.alloc(0),
      lineHandler: undefined,
      idleTag: undefined,
      log,
      deflate: undefined,
      onData: undefined,
    };
    live.add(c);
    attach(c);
    greet(c);
  };

  const server: Server = createServer((raw) => {
    if (options.tls === 'starttls') {
      onSocket(raw, false);
      return;
    }
    const secure = new TLSSocket(raw, { isServer: true, secureContext });
    secure.on('error', () => undefined);
    secure.once('secure', () => onSocket(secure, true));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const fake: FakeImapServer = {
    port,
    refuseAllTokens: false,
    refuseLoginWith: undefined,
    server: { host: '127.0.0.1', port, tls: options.tls },
    authAttempts,
    commands,
    get connections() {
      return connections;
    },
    get compressedSessions() {
      return compressedSessions;
    },
    postLoginCapabilities: postLogin,
    pushUntagged(line: string): number {
      let n = 0;
      for (const c of live) {
        if (c.idleTag !== undefined) {
          write(c, `${line}\r\n`);
          n += 1;
        }
      }
      return n;
    },
    get idling() {
      return [...live].filter((c) => c.idleTag !== undefined).length;
    },
    dropAll(): void {
      for (const c of live) c.socket.destroy();
    },
    async close(): Promise<void> {
      for (const c of live) c.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}

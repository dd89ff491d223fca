/**
 * A fast upstream IMAP fake for benchmarks (the test fake in test/helpers is faithful but chatty: it
 * concatenates buffers per chunk and writes every FETCH part separately). Implicit TLS only, like
 * imap.gmail.com:993. What it serves:
 * - greeting with `[CAPABILITY ... SASL-IR AUTH=XOAUTH2]`, `AUTHENTICATE XOAUTH2` (SASL-IR or `+`),
 *   Gmail's error continuation for a bad token;
 * - mailboxes `BIG` (one message) and `SMALL` (many): any FETCH on the selected mailbox returns the
 *   whole mailbox, prebuilt as one buffer, so the upstream costs one `write()` per FETCH;
 * - CAPABILITY, NOOP, ID, IDLE/DONE, LOGOUT.
 * Every connection counts its commands, so the bench can report upstream round trips per login.
 */
import type { AddressInfo } from 'node:net';
import { createServer, type TLSSocket } from 'node:tls';

export interface FastImapOptions {
  cert: string;
  key: string;
  checkAccessToken(token: string): string | undefined;
  mailboxes: Record<string, Buffer[]>;
}

export interface FastImapServer {
  port: number;
  /** Commands received per authenticated login (AUTHENTICATE included), summed. */
  readonly stats: { connections: number; logins: number; failedLogins: number; commands: number };
  resetStats(): void;
  close(): Promise<void>;
}

const CAPS = 'IMAP4rev1 UNSELECT IDLE NAMESPACE ID CHILDREN SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER';
const POST_CAPS = 'IMAP4rev1 UNSELECT IDLE NAMESPACE ID CHILDREN UIDPLUS ENABLE MOVE LITERAL-';
const GMAIL_ERROR = Buffer.from(
  JSON.stringify({ status: '401', schemes: 'bearer', scope: 'https://mail.google.com/' }),
).toString('base64');

/** `* n FETCH (UID n RFC822.SIZE s BODY[] {s}\r\n<body>)\r\n` for every message, as one buffer. */
export function buildFetchResponse(messages: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  messages.forEach((body, i) => {
    parts.push(
      Buffer.from(`* ${i + 1} FETCH (UID ${i + 1} RFC822.SIZE ${body.length} BODY[] {${body.length}}\r\n`),
      body,
      Buffer.from(')\r\n'),
    );
  });
  return Buffer.concat(parts);
}

export async function startFastImap(options: FastImapOptions): Promise<FastImapServer> {
  const responses = new Map<string, { fetch: Buffer; count: number }>();
  for (const [name, msgs] of Object.entries(options.mailboxes)) {
    responses.set(name.toUpperCase(), { fetch: buildFetchResponse(msgs), count: msgs.length });
  }
  const stats = { connections: 0, logins: 0, failedLogins: 0, commands: 0 };
  const live = new Set<TLSSocket>();

  const serve = (socket: TLSSocket): void => {
    stats.connections += 1;
    live.add(socket);
    socket.on('close', () => live.delete(socket));
    socket.on('error', () => undefined);
    let buffer = '';
    let user: string | undefined;
    let mailbox: { fetch: Buffer; count: number } | undefined;
    let pending: ((line: string) => void) | undefined;
    socket.setNoDelay(true);
    socket.write(`* OK [CAPABILITY ${CAPS}] Gimap ready\r\n`);

    const auth = (tag: string, payload: string): void => {
      const fields = Buffer.from(payload, 'base64').toString('utf8').split('\x01');
      const who = fields[0]?.startsWith('user=') ? fields[0].slice(5) : '';
      const token = fields.find((f) => f.startsWith('auth=Bearer '))?.slice(12) ?? '';
      const owner = options.checkAccessToken(token);
      if (owner !== undefined && owner.toLowerCase() === who.toLowerCase()) {
        user = who;
        stats.logins += 1;
        socket.write(`${tag} OK [CAPABILITY ${POST_CAPS}] ${who} authenticated (Success)\r\n`);
        return;
      }
      stats.failedLogins += 1;
      socket.write(`+ ${GMAIL_ERROR}\r\n`);
      pending = () => socket.write(`${tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n`);
    };

    const command = (line: string): void => {
      stats.commands += 1;
      const sp1 = line.indexOf(' ');
      const tag = line.slice(0, sp1);
      const rest = line.slice(sp1 + 1);
      const sp2 = rest.indexOf(' ');
      const name = (sp2 < 0 ? rest : rest.slice(0, sp2)).toUpperCase();
      const args = sp2 < 0 ? '' : rest.slice(sp2 + 1);
      switch (name) {
        case 'CAPABILITY':
          socket.write(`* CAPABILITY ${user ? POST_CAPS : CAPS}\r\n${tag} OK Success\r\n`);
          return;
        case 'NOOP':
          socket.write(`${tag} OK Success\r\n`);
          return;
        case 'ID':
          socket.write(`* ID ("name" "GImap")\r\n${tag} OK Success\r\n`);
          return;
        case 'LOGOUT':
          socket.end(`* BYE LOGOUT Requested\r\n${tag} OK 73 good day (Success)\r\n`);
          return;
        case 'AUTHENTICATE': {
          const [mech, initial] = args.split(' ');
          if ((mech ?? '').toUpperCase() !== 'XOAUTH2') {
            socket.write(`${tag} NO [CANNOT] Unsupported mechanism\r\n`);
          } else if (initial !== undefined) {
            auth(tag, initial);
          } else {
            socket.write('+ \r\n');
            pending = (answer) => auth(tag, answer);
          }
          return;
        }
      }
      if (!user) {
        socket.write(`${tag} BAD Command not valid in this state\r\n`);
        return;
      }
      switch (name) {
        case 'SELECT':
        case 'EXAMINE': {
          mailbox = responses.get(args.replace(/"/g, '').toUpperCase());
          if (!mailbox) {
            socket.write(`${tag} NO [NONEXISTENT] Unknown mailbox\r\n`);
            return;
          }
          socket.write(
            `* FLAGS (\\Seen)\r\n* ${mailbox.count} EXISTS\r\n* OK [UIDVALIDITY 1] UIDs valid.\r\n${tag} OK [READ-WRITE] Selected\r\n`,
          );
          return;
        }
        case 'FETCH':
        case 'UID':
          if (!mailbox) {
            socket.write(`${tag} BAD No mailbox selected\r\n`);
            return;
          }
          socket.write(mailbox.fetch);
          socket.write(`${tag} OK FETCH completed (Success)\r\n`);
          return;
        case 'IDLE':
          socket.write('+ idling\r\n');
          pending = (done) =>
            socket.write(done.toUpperCase() === 'DONE' ? `${tag} OK IDLE terminated\r\n` : `${tag} BAD\r\n`);
          return;
      }
      socket.write(`${tag} BAD Unknown command\r\n`);
    };

    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buffer = buffer.length === 0 ? chunk : buffer + chunk;
      for (;;) {
        const lf = buffer.indexOf('\n');
        if (lf < 0) break;
        const line = buffer.slice(0, lf > 0 && buffer.charCodeAt(lf - 1) === 13 ? lf - 1 : lf);
        buffer = buffer.slice(lf + 1);
        const next = pending;
        pending = undefined;
        if (next) next(line);
        else command(line);
      }
    });
  };

  const server = createServer({ cert: options.cert, key: options.key }, serve);
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    stats,
    resetStats() {
      Object.assign(stats, { connections: 0, logins: 0, failedLogins: 0, commands: 0 });
    },
    close() {
      for (const s of live) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A fast upstream SMTP sink for benchmarks (smtp-server, used by the tests, unescapes DATA through a
 * stream chain; here the body is only scanned for the end marker and counted). Implicit TLS, like
 * smtp.gmail.com:465. EHLO advertises AUTH XOAUTH2; AUTH XOAUTH2 works with an initial response or in
 * two steps (`334`, then the token), with Gmail's `334 <base64 JSON>` error challenge for a bad token.
 */
import type { AddressInfo } from 'node:net';
import { createServer, type TLSSocket } from 'node:tls';

export interface FastSmtpOptions {
  cert: string;
  key: string;
  checkAccessToken(token: string): string | undefined;
}

export interface FastSmtpServer {
  port: number;
  readonly stats: { connections: number; logins: number; messages: number; bodyBytes: number };
  close(): Promise<void>;
}

const EHLO_LINES = [
  'PIPELINING',
  '8BITMIME',
  'SIZE 35882577',
  'ENHANCEDSTATUSCODES',
  'AUTH XOAUTH2 OAUTHBEARER',
];
const END = Buffer.from('\r\n.\r\n');
const ERROR_CHALLENGE = Buffer.from(
  JSON.stringify({ status: '400', schemes: 'Bearer', scope: 'https://mail.google.com/' }),
).toString('base64');

export async function startFastSmtp(options: FastSmtpOptions): Promise<FastSmtpServer> {
  const stats = { connections: 0, logins: 0, messages: 0, bodyBytes: 0 };
  const live = new Set<TLSSocket>();

  const serve = (socket: TLSSocket): void => {
    stats.connections += 1;
    live.add(socket);
    socket.on('close', () => live.delete(socket));
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    let line = Buffer.alloc(0);
    let inData = false;
    /** Last bytes of the body so far, to find an end marker split across chunks. */
    let tail = Buffer.from('\r\n');
    let pending: ((line: string) => void) | undefined;
    socket.write('220 fake.bench ESMTP ready\r\n');

    const auth = (payload: string): void => {
      const fields = Buffer.from(payload, 'base64').toString('utf8').split('\x01');
      const who = fields[0]?.startsWith('user=') ? fields[0].slice(5) : '';
      const token = fields.find((f) => f.startsWith('auth=Bearer '))?.slice(12) ?? '';
      const owner = options.checkAccessToken(token);
      if (owner !== undefined && owner.toLowerCase() === who.toLowerCase()) {
        stats.logins += 1;
        socket.write('235 2.7.0 Accepted\r\n');
        return;
      }
      socket.write(`334 ${ERROR_CHALLENGE}\r\n`);
      pending = () => socket.write('535 5.7.8 Username and Password not accepted.\r\n');
    };

    const command = (text: string): void => {
      const next = pending;
      pending = undefined;
      if (next) {
        next(text);
        return;
      }
      const verb = text.slice(0, 4).toUpperCase();
      switch (verb) {
        case 'EHLO':
          socket.write(
            `250-fake.bench at your service\r\n${EHLO_LINES.map((l, i) => `250${i === EHLO_LINES.length - 1 ? ' ' : '-'}${l}`).join('\r\n')}\r\n`,
          );
          return;
        case 'HELO':
          socket.write('250 fake.bench\r\n');
          return;
        case 'AUTH': {
          const [, mech, initial] = text.split(' ');
          if ((mech ?? '').toUpperCase() !== 'XOAUTH2') socket.write('504 5.7.4 Unrecognized mechanism\r\n');
          else if (initial !== undefined) auth(initial);
          else {
            socket.write('334 \r\n');
            pending = auth;
          }
          return;
        }
        case 'MAIL':
        case 'RCPT':
        case 'RSET':
        case 'NOOP':
          socket.write('250 2.1.0 OK\r\n');
          return;
        case 'DATA':
          inData = true;
          tail = Buffer.from('\r\n');
          socket.write('354 Go ahead\r\n');
          return;
        case 'QUIT':
          socket.end('221 2.0.0 closing connection\r\n');
          return;
      }
      socket.write('502 5.5.1 Unrecognized command\r\n');
    };

    /** Consumes body bytes; returns the offset just after the end marker, or -1. */
    const body = (chunk: Buffer): number => {
      const joint = Buffer.concat([tail, chunk.subarray(0, END.length - 1)]);
      let at = joint.indexOf(END);
      let end = -1;
      if (at >= 0) end = at + END.length - tail.length;
      else {
        at = chunk.indexOf(END);
        if (at >= 0) end = at + END.length;
      }
      const used = end < 0 ? chunk.length : end;
      stats.bodyBytes += used;
      const keep = END.length - 1;
      tail =
        used >= keep
          ? Buffer.from(chunk.subarray(used - keep, used))
          : Buffer.concat([tail, chunk.subarray(0, used)]).subarray(-keep);
      return end;
    };

    socket.on('data', (chunk: Buffer) => {
      let rest = chunk;
      while (rest.length > 0) {
        if (inData) {
          const end = body(rest);
          if (end < 0) return;
          inData = false;
          stats.messages += 1;
          socket.write('250 2.0.0 OK queued\r\n');
          rest = rest.subarray(end);
          continue;
        }
        const lf = rest.indexOf(0x0a);
        if (lf < 0) {
          line = Buffer.concat([line, rest]);
          return;
        }
        const full = Buffer.concat([line, rest.subarray(0, lf + 1)]);
        line = Buffer.alloc(0);
        rest = rest.subarray(lf + 1);
        command(full.toString('latin1').replace(/\r?\n$/, ''));
      }
    });
  };

  const server = createServer({ cert: options.cert, key: options.key }, serve);
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    stats,
    close() {
      for (const s of live) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

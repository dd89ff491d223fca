/**
 * An IMAP listener behind a load balancer (proxyProtocol): the PROXY header's source address is the
 * client everywhere after it, the login limiter (the authenticator's attempt) and the session's log
 * line included; only the trusted balancer may connect; the header may come in pieces, together with
 * the first command, or before an implicit-TLS handshake.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { getTestCerts } from '../../helpers/certs.js';
import {
  eventually,
  literalLogin,
  sessionLines,
  startImapEnv,
  type EnvOptions,
  type ImapEnv,
} from './env.js';
import { RawImap } from './raw-client.js';

const BALANCER = '127.0.0.2';
const V1 = 'PROXY TCP4 192.0.2.7 198.51.100.1 56324 143\r\n';

/** A v2 PROXY header for TCP over IPv6 from 2001:db8::7 port 5555, with one TLV after the addresses. */
function v2Ipv6(): Buffer {
  const body = Buffer.alloc(36 + 7);
  Buffer.from('20010db8000000000000000000000007', 'hex').copy(body, 0);
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(body, 16);
  body.writeUInt16BE(5555, 32);
  body.writeUInt16BE(143, 34);
  body[36] = 0x01; // ALPN TLV, which the listener skips
  body.writeUInt16BE(4, 37);
  body.write('imap', 39, 'latin1');
  const fixed = Buffer.from([0x21, 0x21, 0, 0]);
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), fixed, body]);
}

let env: ImapEnv | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await env?.close();
  env = undefined;
});

function setup(options: Partial<EnvOptions> = {}): Promise<ImapEnv> {
  return startImapEnv({
    listenerTls: 'none',
    upstreamTls: 'implicit',
    proxyProtocol: { trustedProxies: [`${BALANCER}/32`] },
    ...options,
  }).then((e) => (env = e));
}

/** A plain TCP connection from `from`, as the balancer would open it. */
async function connectFrom(e: ImapEnv, from = BALANCER): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port: e.port, localAddress: from });
  sockets.push(socket);
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Logs in and checks the address the limiter and the session log line saw. */
async function loginAndCheck(
  e: ImapEnv,
  client: RawImap,
  address: string,
  logged: string | RegExp,
): Promise<void> {
  await client.waitFor('* OK');
  client.write(literalLogin('a1'));
  expect(await client.waitFor(/a1 (OK|NO|BAD).*\r\n/)).toMatch(/a1 OK /);
  client.write('a2 LOGOUT\r\n');
  await client.waitFor('a2 OK');
  expect(e.authenticator.attempts.map((a) => a.remoteAddress)).toEqual([address]);
  await eventually(() => sessionLines(e).length === 1);
  const line = sessionLines(e)[0]?.client;
  if (typeof logged === 'string') expect(line).toBe(logged);
  else expect(line).toMatch(logged);
}

/** Resolves with everything received once the server has closed the connection. */
function untilClosed(socket: Socket): Promise<string> {
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still open; got ${JSON.stringify(text)}`)), 10_000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

describe('IMAP listener with proxyProtocol', () => {
  it('a v1 header names the client for the limiter and the log', async () => {
    const e = await setup();
    const socket = await connectFrom(e);
    socket.write(V1);
    await loginAndCheck(e, RawImap.wrap(socket), '192.0.2.7', '192.0.2.7:56324');
  });

  it('a v2 IPv6 header with a TLV names the client', async () => {
    const e = await setup();
    const socket = await connectFrom(e);
    socket.write(v2Ipv6());
    await loginAndCheck(e, RawImap.wrap(socket), '2001:db8::7', '[2001:db8::7]:5555');
  });

  it('a header split over several packets works', async () => {
    const e = await setup();
    const socket = await connectFrom(e);
    const client = RawImap.wrap(socket);
    const header = v2Ipv6();
    for (const [from, to] of [
      [0, 5],
      [5, 13],
      [13, 30],
      [30, header.length],
    ] as const) {
      socket.write(header.subarray(from, to));
      await pause(30);
    }
    await loginAndCheck(e, client, '2001:db8::7', '[2001:db8::7]:5555');
  });

  it('the first command in the same write as the header reaches IMAP', async () => {
    const e = await setup();
    const socket = await connectFrom(e);
    const client = RawImap.wrap(socket);
    socket.write(`${V1}${literalLogin('a1')}`);
    expect(await client.waitFor(/a1 (OK|NO|BAD).*\r\n/)).toMatch(/\* OK[^]*a1 OK /);
    client.write('a2 LOGOUT\r\n');
    await client.waitFor('a2 OK');
    expect(e.authenticator.attempts.map((a) => a.remoteAddress)).toEqual(['192.0.2.7']);
    await eventually(() => sessionLines(e).length === 1);
    expect(sessionLines(e)[0]?.client).toBe('192.0.2.7:56324');
  });

  it('implicit TLS starts after the header', async () => {
    const e = await setup({ listenerTls: 'implicit' });
    const socket = await connectFrom(e);
    socket.write(V1);
    const tls = tlsConnect({ socket, host: '127.0.0.1', ca: getTestCerts().caPem });
    sockets.push(tls);
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', resolve);
      tls.once('error', reject);
    });
    await loginAndCheck(e, RawImap.wrap(tls), '192.0.2.7', '192.0.2.7:56324');
  });

  it('LOCAL (v2) keeps the balancer address', async () => {
    const e = await setup();
    const socket = await connectFrom(e);
    socket.write(Buffer.from('0d0a0d0a000d0a515549540a20000000', 'hex'));
    await loginAndCheck(e, RawImap.wrap(socket), BALANCER, /^127\.0\.0\.2:\d+$/);
  });

  it('a connection from outside trustedProxies is closed without a word, and logged', async () => {
    const e = await setup();
    const socket = await connectFrom(e, '127.0.0.3');
    const closed = untilClosed(socket);
    socket.write(V1);
    expect(await closed).toBe('');
    expect(e.logText()).toContain('not in trustedProxies');
    expect(e.authenticator.attempts).toEqual([]);
  });

  it('a malformed header closes the connection, and says why in the log', async () => {
    const e = await setup();
    const socket = await connectFrom(e);
    const closed = untilClosed(socket);
    socket.write(literalLogin('a1'));
    expect(await closed).toBe('');
    await eventually(() => e.logText().includes('bad PROXY protocol header'));
    expect(e.logText()).toContain('not a PROXY protocol header');
  });

  it('without proxyProtocol a PROXY line is just a bad command', async () => {
    const e = await setup({ proxyProtocol: undefined });
    const socket = await connectFrom(e, '127.0.0.1');
    const client = RawImap.wrap(socket);
    await client.waitFor('* OK');
    socket.write(V1);
    expect(await client.waitFor(/PROXY .*\r\n/)).toMatch(/PROXY BAD /);
  });
});

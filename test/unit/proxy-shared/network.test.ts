/**
 * The socket-level shared pieces against real sockets on 127.0.0.1: listener, STARTTLS upgrade,
 * upstream connect (certificate verification, deadline), relay.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import type { ListenerConfig } from '../../../src/config/types.js';
import { silentLogger } from '../../../src/log.js';
import { ProxyListener } from '../../../src/proxy/shared/listener.js';
import { RELAY_WRITE_BUFFER } from '../../../src/proxy/shared/limits.js';
import { startRelay } from '../../../src/proxy/shared/relay.js';
import { upgradeToTls } from '../../../src/proxy/shared/starttls.js';
import { createLocalSecureContext, upstreamTlsOptions } from '../../../src/proxy/shared/tls-context.js';
import { connectUpstream, type UpstreamDialect } from '../../../src/proxy/shared/upstream.js';
import type { ProxySession } from '../../../src/proxy/shared/types.js';
import { getTestCerts } from '../../helpers/certs.js';

const certs = getTestCerts();
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
}

/** Reads from a socket until `pattern` has been seen; bounded by the test timeout. */
function readUntil(socket: Socket, pattern: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer): void => {
      text += d.toString('utf8');
      if (text.includes(pattern)) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
    socket.once('close', () =>
      reject(new Error(`closed before ${JSON.stringify(pattern)}; got ${JSON.stringify(text)}`)),
    );
  });
}

const lineDialect: UpstreamDialect<string> = {
  async readGreeting(conn) {
    return conn.readLine();
  },
  async requestStartTls(conn) {
    conn.write('STARTTLS\r\n');
    const line = await conn.readLine();
    if (line !== 'OK go') throw new Error(`bad starttls reply ${line}`);
  },
};

describe('upgradeToTls (client side STARTTLS)', () => {
  it('discards plaintext pipelined after STARTTLS and only sees what came over TLS', async () => {
    const context = createLocalSecureContext({
      host: '127.0.0.1',
      port: 0,
      tls: 'starttls',
      cert: certs.certPem,
      key: certs.keyPem,
    });
    const received: string[] = [];
    const server = createServer((socket) => {
      socket.once('data', (first: Buffer) => {
        received.push(`plain:${first.toString().split('\r\n')[0]}`);
        socket.write('OK go\r\n');
        void upgradeToTls(socket, context).then(({ socket: secure }) => {
          secure.on('data', (d: Buffer) => {
            received.push(`tls:${d.toString()}`);
            secure.end('done\r\n');
          });
        });
      });
    });
    const port = await listen(server);
    cleanups.push(() => server.close());
    const plain = netConnect(port, '127.0.0.1');
    await once(plain, 'connect');
    // The injection: a second command in the same packet as STARTTLS.
    plain.write('STARTTLS\r\nINJECTED COMMAND\r\n');
    await readUntil(plain, 'OK go\r\n');
    const secure = tlsConnect({ socket: plain, host: '127.0.0.1', ca: certs.caPem });
    await once(secure, 'secureConnect');
    secure.write('AFTER TLS\r\n');
    await readUntil(secure, 'done');
    expect(received).toEqual(['plain:STARTTLS', 'tls:AFTER TLS\r\n']);
    expect(received.join('')).not.toContain('INJECTED');
  });
});

describe('connectUpstream', () => {
  it('reuses one upstream TLS context per extra CA instead of building one per connection', () => {
    // Building a context with the system roots costs ~100 ms of CPU: per connection it stalled bursts.
    const a = upstreamTlsOptions('imap.example.com', certs.caPem);
    const b = upstreamTlsOptions('smtp.example.com', certs.caPem);
    const systemOnly = upstreamTlsOptions('imap.example.com', undefined);
    expect(a.secureContext).toBeDefined();
    expect(b.secureContext).toBe(a.secureContext);
    expect(systemOnly.secureContext).not.toBe(a.secureContext);
    expect(upstreamTlsOptions('x.example.com', undefined).secureContext).toBe(systemOnly.secureContext);
    expect(a.rejectUnauthorized).toBe(true);
    expect(a.servername).toBe('imap.example.com');
  });

  it('connects with implicit TLS when the certificate chains to the connection CA', async () => {
    const server = createTlsServer({ cert: certs.certPem, key: certs.keyPem }, (s) =>
      s.write('* OK hello\r\n'),
    );
    const port = await listen(server);
    cleanups.push(() => server.close());
    const { conn, greeting } = await connectUpstream(
      { server: { host: '127.0.0.1', port, tls: 'implicit' }, ca: certs.caPem, timeoutMs: 10_000 },
      lineDialect,
    );
    expect(greeting).toBe('* OK hello');
    expect((conn.socket as TLSSocket).authorized).toBe(true);
    conn.close();
  });

  it('verifies against the host name when connecting by name (SNI localhost)', async () => {
    let sni: string | undefined;
    const server = createTlsServer({ cert: certs.certPem, key: certs.keyPem }, (s) => {
      sni = (s as unknown as { servername?: string }).servername;
      s.write('* OK hi\r\n');
    });
    const port = await listen(server);
    cleanups.push(() => server.close());
    const { conn } = await connectUpstream(
      { server: { host: 'localhost', port, tls: 'implicit' }, ca: certs.caPem, timeoutMs: 10_000 },
      lineDialect,
    );
    expect(sni).toBe('localhost');
    conn.close();
  });

  it('refuses a certificate the system CAs do not trust when no ca is configured', async () => {
    const server = createTlsServer({ cert: certs.certPem, key: certs.keyPem }, (s) =>
      s.write('* OK hello\r\n'),
    );
    const port = await listen(server);
    cleanups.push(() => server.close());
    await expect(
      connectUpstream(
        { server: { host: '127.0.0.1', port, tls: 'implicit' }, timeoutMs: 10_000 },
        lineDialect,
      ),
    ).rejects.toMatchObject({ code: 'upstream-unavailable' });
  });

  it('runs the dialect STARTTLS and then verifies the certificate', async () => {
    const context = createLocalSecureContext({
      host: '127.0.0.1',
      port: 0,
      tls: 'starttls',
      cert: certs.certPem,
      key: certs.keyPem,
    });
    const server = createServer((socket) => {
      socket.write('* OK plain\r\n');
      socket.once('data', () => {
        socket.write('OK go\r\n');
        void upgradeToTls(socket, context).then(({ socket: s }) => {
          s.on('data', (d: Buffer) => s.write(`echo ${d.toString()}`));
        });
      });
    });
    const port = await listen(server);
    cleanups.push(() => server.close());
    const { conn } = await connectUpstream(
      { server: { host: '127.0.0.1', port, tls: 'starttls' }, ca: certs.caPem, timeoutMs: 10_000 },
      lineDialect,
    );
    expect((conn.socket as TLSSocket).encrypted).toBe(true);
    conn.write('ping\r\n');
    expect(await conn.readLine()).toBe('echo ping');
    conn.close();
  });

  it('fails with upstream-unavailable when the greeting does not come within the deadline', async () => {
    const server = createServer(() => undefined); // accepts, never greets
    const port = await listen(server);
    cleanups.push(() => {
      server.close();
    });
    const started = Date.now();
    await expect(
      connectUpstream({ server: { host: '127.0.0.1', port, tls: 'starttls' }, timeoutMs: 300 }, lineDialect),
    ).rejects.toMatchObject({ code: 'upstream-unavailable', detail: 'timed out' });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('fails with upstream-unavailable when nobody listens', async () => {
    const server = createServer();
    const port = await listen(server);
    await new Promise((r) => server.close(r));
    await expect(
      connectUpstream(
        { server: { host: '127.0.0.1', port, tls: 'implicit' }, timeoutMs: 5_000 },
        lineDialect,
      ),
    ).rejects.toMatchObject({ code: 'upstream-unavailable' });
  });
});

/** A connected pair of TCP sockets (server side, client side). */
async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  const port = await listen(server);
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = netConnect(port, '127.0.0.1');
  const [serverSide] = await accepted;
  await once(client, 'connect').catch(() => undefined);
  server.close();
  return [serverSide, client];
}

/** A TLS connection on 127.0.0.1: [the accepting side (a TLS listener's socket), the connecting side]. */
async function tlsPair(): Promise<[TLSSocket, TLSSocket]> {
  const server = createTlsServer({ cert: certs.certPem, key: certs.keyPem });
  const port = await listen(server);
  const accepted = once(server, 'secureConnection') as Promise<[TLSSocket]>;
  const client = tlsConnect({ port, host: '127.0.0.1', ca: certs.caPem });
  const [[serverSide]] = await Promise.all([accepted, once(client, 'secureConnect')]);
  server.close();
  return [serverSide, client];
}

/** Writes `size` bytes into `from` (honouring its backpressure) and resolves with what `to` received. */
async function sendThrough(from: Socket, to: Socket, size: number, chunk: Buffer): Promise<number> {
  let received = 0;
  const got = new Promise<void>((resolve) =>
    to.on('data', (d: Buffer) => {
      received += d.length;
      if (received >= size) resolve();
    }),
  );
  for (let sent = 0; sent < size; sent += chunk.length) {
    if (!from.write(chunk)) await once(from, 'drain');
  }
  await got;
  return received;
}

describe('startRelay', () => {
  it('sends pending bytes first, in order, then pipes both ways and counts the bytes it read', async () => {
    const [proxyClientLeg, client] = await socketPair();
    const [proxyUpstreamLeg, upstream] = await socketPair();
    const relay = startRelay({
      client: proxyClientLeg,
      upstream: proxyUpstreamLeg,
      clientPending: Buffer.from('a2 SELECT INBOX\r\n'),
      upstreamPending: Buffer.from('* 3 EXISTS\r\n'),
    });
    client.write('a3 NOOP\r\n');
    const seenUpstream = await readUntil(upstream, 'a3 NOOP\r\n');
    expect(seenUpstream).toBe('a2 SELECT INBOX\r\na3 NOOP\r\n');
    upstream.write('a3 OK done\r\n');
    expect(await readUntil(client, 'a3 OK done\r\n')).toBe('* 3 EXISTS\r\na3 OK done\r\n');
    upstream.end();
    const result = await relay.done;
    expect({ from: result.bytesFromClient, to: result.bytesToClient }).toEqual({ from: 9, to: 12 });
    // The upstream's FIN reached the client as a FIN, after the data.
    await new Promise<void>((resolve) =>
      client.readableEnded ? resolve() : client.once('end', () => resolve()),
    );
  });

  it('leaves both sockets with the own properties it found (their hidden class unchanged)', async () => {
    const [proxyClientLeg, client] = await socketPair();
    const [proxyUpstreamLeg, upstream] = await socketPair();
    // Node's stream code, shared by every socket, turns slow on each chunk once it has met more than
    // four socket shapes; a property added here would double the shapes a relaying proxy shows it.
    const keys = (s: Socket): (string | symbol)[] => Reflect.ownKeys(s);
    const before = { client: keys(proxyClientLeg), upstream: keys(proxyUpstreamLeg) };
    const relay = startRelay({ client: proxyClientLeg, upstream: proxyUpstreamLeg });
    client.write('a1 NOOP\r\n');
    await readUntil(upstream, 'a1 NOOP\r\n');
    upstream.write('a1 OK\r\n');
    await readUntil(client, 'a1 OK\r\n');
    expect({ client: keys(proxyClientLeg), upstream: keys(proxyUpstreamLeg) }).toEqual(before);
    upstream.end();
    await relay.done;
  });

  it('gives every leg room for more than one socket read in its write buffer', async () => {
    const [proxyClientLeg, client] = await tlsPair();
    const [proxyUpstreamLeg, upstream] = await socketPair();
    expect(proxyClientLeg.writableHighWaterMark).toBeLessThan(RELAY_WRITE_BUFFER);
    expect(proxyUpstreamLeg.writableHighWaterMark).toBeLessThan(RELAY_WRITE_BUFFER);
    const relay = startRelay({ client: proxyClientLeg, upstream: proxyUpstreamLeg });
    expect(proxyClientLeg.writableHighWaterMark).toBe(RELAY_WRITE_BUFFER);
    expect(proxyUpstreamLeg.writableHighWaterMark).toBe(RELAY_WRITE_BUFFER);
    // pipe() pauses its source whenever a write leaves the destination's buffer full. A TLS socket
    // reports a write done only a turn later, so with Node's 16 KiB default every chunk would pause
    // the source: over 200 times for these 10 MB (160 reads of 64 KiB). With the wider buffer it
    // pauses only when the reader falls behind (a handful of times here).
    const size = 10 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 0x62);
    let pauses = 0;
    proxyUpstreamLeg.on('pause', () => (pauses += 1));
    expect(await sendThrough(upstream, client, size, chunk)).toBe(size);
    expect(pauses).toBeLessThan(size / chunk.length / 4);
    upstream.end();
    await relay.done;
    client.destroy();
  });

  it.each([
    ['TLS', tlsPair],
    ['plain', socketPair],
  ] as const)(
    'still holds back a fast upstream when the %s client stops reading: at most the wider buffer and one read',
    async (_kind, clientPair) => {
      const [proxyClientLeg, client] = await clientPair();
      const [proxyUpstreamLeg, upstream] = await socketPair();
      const relay = startRelay({ client: proxyClientLeg, upstream: proxyUpstreamLeg });
      client.pause();
      const chunk = Buffer.alloc(64 * 1024, 0x63);
      // Write until the upstream's own socket says stop and stays stopped: the kernel buffers on both
      // legs are full and the proxy has stopped reading. Bounded at 256 MB in case it never stops.
      let stalled = false;
      for (let sent = 0; !stalled && sent < 256 * 1024 * 1024; sent += chunk.length) {
        if (upstream.write(chunk)) continue;
        const drained = once(upstream, 'drain').then(() => true);
        stalled = !(await Promise.race([drained, new Promise((r) => setTimeout(() => r(false), 300))]));
      }
      expect(stalled).toBe(true);
      expect(proxyClientLeg.writableLength).toBeGreaterThan(0);
      expect(proxyClientLeg.writableLength).toBeLessThanOrEqual(RELAY_WRITE_BUFFER + chunk.length);
      relay.destroy();
      await relay.done;
      client.destroy();
      upstream.destroy();
    },
  );

  it("writes a TLS upstream's records to a plain client in batches, every byte in order", async () => {
    const [upstream, proxyUpstreamLeg] = await tlsPair();
    const [proxyClientLeg, client] = await socketPair();
    const relay = startRelay({ client: proxyClientLeg, upstream: proxyUpstreamLeg });
    // Count the records the TLS leg hands over (at most 16 KiB each) and the writes the plain leg
    // makes of them: without batching, one write per record.
    let records = 0;
    proxyUpstreamLeg.on('data', () => (records += 1));
    let writes = 0;
    const leg = proxyClientLeg as unknown as Record<'_write' | '_writev', (...args: unknown[]) => unknown>;
    for (const method of ['_write', '_writev'] as const) {
      const original = leg[method].bind(proxyClientLeg);
      leg[method] = (...args: unknown[]) => {
        writes += 1;
        return original(...args);
      };
    }
    const size = 8 * 1024 * 1024;
    const sent = createHash('sha256');
    const received = createHash('sha256');
    let count = 0;
    const done = new Promise<void>((resolve) =>
      client.on('data', (d: Buffer) => {
        received.update(d);
        count += d.length;
        if (count >= size) resolve();
      }),
    );
    for (let offset = 0; offset < size; offset += 64 * 1024) {
      const chunk = Buffer.alloc(64 * 1024, offset / 1024);
      sent.update(chunk);
      if (!upstream.write(chunk)) await once(upstream, 'drain');
    }
    await done;
    expect(count).toBe(size);
    expect(received.digest('hex')).toBe(sent.digest('hex'));
    expect(records).toBeGreaterThanOrEqual(size / (16 * 1024));
    expect(writes).toBeLessThan(records / 2);
    upstream.end();
    await relay.done;
    client.destroy();
  });

  it('moves 20 MB with backpressure and ends the client when the upstream resets', async () => {
    const [proxyClientLeg, client] = await socketPair();
    const [proxyUpstreamLeg, upstream] = await socketPair();
    const relay = startRelay({ client: proxyClientLeg, upstream: proxyUpstreamLeg });
    const size = 20 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    expect(await sendThrough(upstream, client, size, chunk)).toBe(size);
    upstream.resetAndDestroy();
    const result = await relay.done;
    expect(result.bytesToClient).toBe(size);
    expect(result.endedBy).toBe('upstream');
    await new Promise<void>((resolve) => (client.closed ? resolve() : client.once('close', () => resolve())));
  });
});

describe('ProxyListener', () => {
  function fakeSessionFactory(log: string[]) {
    return (socket: Socket, ctx: { secure: boolean; remoteAddress: string }): ProxySession => {
      log.push(`open secure=${ctx.secure} from=${ctx.remoteAddress}`);
      socket.write('hello\r\n');
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      return {
        close() {
          socket.end('bye\r\n');
        },
        closed,
      };
    };
  }

  it('serves implicit TLS with the configured cert and ends sessions on close()', async () => {
    const log: string[] = [];
    const config: ListenerConfig = {
      host: '127.0.0.1',
      port: 0,
      tls: 'implicit',
      cert: certs.certPem,
      key: certs.keyPem,
    };
    const listener = new ProxyListener(config, fakeSessionFactory(log), silentLogger());
    const { port, host } = await listener.listen();
    expect(host).toBe('127.0.0.1');
    const client = tlsConnect({ host: '127.0.0.1', port, ca: certs.caPem });
    const text = readUntil(client, 'hello');
    await once(client, 'secureConnect');
    await text;
    expect(listener.sessionCount).toBe(1);
    const bye = readUntil(client, 'bye');
    await listener.close();
    await bye;
    expect(log).toEqual(['open secure=true from=127.0.0.1']);
    expect(listener.sessionCount).toBe(0);
  });

  it('refuses a TLS listener without a cert at construction time', () => {
    expect(
      () =>
        new ProxyListener(
          { host: '127.0.0.1', port: 0, tls: 'starttls' },
          fakeSessionFactory([]),
          silentLogger(),
        ),
    ).toThrow(/cert/);
  });

  it.each([
    ['refuses TLS 1.0 by default', undefined, false],
    ['allows TLS 1.0 when the listener asks for it (old devices)', 'TLSv1', true],
  ] as const)('%s', async (_name, minVersion, works) => {
    const listener = new ProxyListener(
      {
        host: '127.0.0.1',
        port: 0,
        tls: 'implicit',
        cert: certs.certPem,
        key: certs.keyPem,
        ...(minVersion ? { minVersion } : {}),
      },
      fakeSessionFactory([]),
      silentLogger(),
    );
    const { port } = await listener.listen();
    cleanups.push(() => listener.close());
    const old = tlsConnect({
      host: '127.0.0.1',
      port,
      ca: certs.caPem,
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    });
    const outcome = await new Promise<string | null>((resolve) => {
      old.once('secureConnect', () => resolve(old.getProtocol()));
      old.once('error', () => resolve('failed'));
    });
    old.destroy();
    expect(outcome).toBe(works ? 'TLSv1' : 'failed');
  });
});

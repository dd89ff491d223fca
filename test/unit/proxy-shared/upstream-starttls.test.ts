/**
 * The upstream STARTTLS switch under a deadline: a server that says "go ahead" and then never answers
 * the TLS ClientHello must not hang the login; the connect fails with upstream-unavailable in time.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors.js';
import { connectUpstream, type UpstreamDialect } from '../../../src/proxy/shared/upstream.js';
import { getTestCerts } from '../../helpers/certs.js';

const certs = getTestCerts();
let server: Server | undefined;
const sockets = new Set<Socket>();
afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** Greets, answers the STARTTLS line with "go ahead", then stays silent (the handshake stalls). */
async function stallingServer(): Promise<number> {
  server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.write('HELLO\r\n');
    socket.once('data', () => socket.write('GO\r\n'));
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

const dialect: UpstreamDialect<string> = {
  readGreeting: (conn) => conn.readLine(),
  async requestStartTls(conn) {
    conn.write('STARTTLS\r\n');
    expect(await conn.readLine()).toBe('GO');
  },
};

/** Settles within `ms`, or says it hung. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

describe('connectUpstream with STARTTLS', () => {
  it('fails with upstream-unavailable when the TLS handshake stalls past the deadline', async () => {
    const port = await stallingServer();
    const started = Date.now();
    const result = connectUpstream(
      { server: { host: '127.0.0.1', port, tls: 'starttls' }, ca: certs.caPem, timeoutMs: 300 },
      dialect,
    );
    const error = await within(result, 5_000).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ProxyError);
    expect(error).toMatchObject({ code: 'upstream-unavailable', detail: 'timed out' });
    expect(Date.now() - started).toBeLessThan(5_000);
    // The stalled server sees its connection go away: nothing is left open on our side.
    await within(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if ([...sockets].every((s) => s.destroyed || s.readableEnded)) resolve();
          else setTimeout(check, 20);
        };
        check();
      }),
      5_000,
    );
  });

  it('fails with upstream-unavailable when aborted during a stalled handshake', async () => {
    const port = await stallingServer();
    const abort = new AbortController();
    const result = connectUpstream(
      {
        server: { host: '127.0.0.1', port, tls: 'starttls' },
        ca: certs.caPem,
        timeoutMs: 60_000,
        signal: abort.signal,
      },
      dialect,
    );
    setTimeout(() => abort.abort(), 200);
    await expect(within(result, 5_000)).rejects.toMatchObject({
      code: 'upstream-unavailable',
      detail: 'aborted',
    });
  });
});

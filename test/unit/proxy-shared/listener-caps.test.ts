/**
 * ProxyListener's connection caps: at the cap a connection is served, one over it gets the "too busy"
 * reply and is closed; the per-address cap counts only connections that have not logged in yet.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { ProxyListener, type ListenerCaps } from '../../../src/proxy/shared/listener.js';
import type { ConnectionContext, ProxySession } from '../../../src/proxy/shared/types.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const BUSY = 'BUSY try later\r\n';

/** Sessions that greet with "hello" and expose their context so a test can mark them logged in. */
async function start(caps: ListenerCaps): Promise<{ port: number; contexts: ConnectionContext[] }> {
  const contexts: ConnectionContext[] = [];
  const listener = new ProxyListener(
    { host: '127.0.0.1', port: 0, tls: 'none' },
    (socket, context): ProxySession => {
      contexts.push(context);
      socket.write('hello\r\n');
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      return { close: () => socket.destroy(), closed };
    },
    silentLogger(),
    { ...caps, busyReply: BUSY },
  );
  const { port } = await listener.listen();
  cleanups.push(() => listener.close());
  return { port, contexts };
}

/** Connects and returns the first line, and whether the server then closed the connection. */
async function connectOnce(port: number): Promise<{ socket: Socket; first: string; closed: Promise<void> }> {
  const socket = netConnect({ port, host: '127.0.0.1' });
  socket.on('error', () => undefined);
  cleanups.push(() => socket.destroy());
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const first = await new Promise<string>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no line, got ${JSON.stringify(text)}`)), 10_000);
    socket.on('data', (d: Buffer) => {
      text += d.toString('utf8');
      if (text.includes('\r\n')) {
        clearTimeout(timer);
        resolve(text);
      }
    });
  });
  return { socket, first, closed };
}

describe('ProxyListener caps', () => {
  it('serves maxConnections connections and refuses one more with the busy reply', async () => {
    const { port } = await start({ maxConnections: 2 });
    const a = await connectOnce(port);
    const b = await connectOnce(port);
    expect(a.first).toBe('hello\r\n');
    expect(b.first).toBe('hello\r\n');
    const c = await connectOnce(port);
    expect(c.first).toBe(BUSY);
    await c.closed;
    // A slot that frees up is usable again.
    a.socket.destroy();
    await a.closed;
    for (let i = 0; i < 100; i++) {
      const d = await connectOnce(port);
      if (d.first === 'hello\r\n') return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('the freed slot was never reused');
  });

  it('caps connections not logged in per address; logged-in ones no longer count', async () => {
    const { port, contexts } = await start({ maxConnectionsPerAddress: 2 });
    expect((await connectOnce(port)).first).toBe('hello\r\n');
    expect((await connectOnce(port)).first).toBe('hello\r\n');
    expect((await connectOnce(port)).first).toBe(BUSY);
    // One logs in (its relay starts): its address may open another pre-login connection.
    contexts[0]?.loggedIn?.();
    contexts[0]?.loggedIn?.(); // idempotent
    expect((await connectOnce(port)).first).toBe('hello\r\n');
    expect((await connectOnce(port)).first).toBe(BUSY);
  });
});

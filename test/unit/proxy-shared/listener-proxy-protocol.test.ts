/**
 * The listener's side of the PROXY protocol: allowFrom and the per-address cap apply to the header's
 * client, not to the balancer; close() does not wait for a connection that is still sending its header.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import type { ListenerConfig } from '../../../src/config/types.js';
import { ProxyListener } from '../../../src/proxy/shared/listener.js';
import type { ConnectionContext, ProxySession } from '../../../src/proxy/shared/types.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const BASE: ListenerConfig = {
  host: '127.0.0.1',
  port: 0,
  tls: 'none',
  proxyProtocol: { trustedProxies: ['127.0.0.0/8'] },
};

async function start(
  config: ListenerConfig,
  contexts: ConnectionContext[],
  maxConnectionsPerAddress?: number,
): Promise<{ port: number; listener: ProxyListener; log: string[] }> {
  const log: string[] = [];
  const listener = new ProxyListener(
    config,
    (socket, context): ProxySession => {
      contexts.push(context);
      socket.write('hello\r\n');
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      return { close: () => socket.destroy(), closed };
    },
    pino({ level: 'debug' }, { write: (line: string) => void log.push(line) }),
    maxConnectionsPerAddress !== undefined ? { maxConnectionsPerAddress, busyReply: 'busy\r\n' } : {},
  );
  const { port } = await listener.listen();
  cleanups.push(() => listener.close());
  return { port, listener, log };
}

/** Writes `header` and returns what the listener sent before it closed or said hello. */
function exchange(port: number, header: string, keep: Socket[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port }, () => socket.write(header));
    keep.push(socket);
    cleanups.push(() => socket.destroy());
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no answer; got ${JSON.stringify(text)}`)), 5_000);
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.endsWith('\r\n')) {
        clearTimeout(timer);
        resolve(text);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

const header = (address: string) => `PROXY TCP4 ${address} 127.0.0.1 40000 143\r\n`;

describe('listener with proxyProtocol', () => {
  it('applies allowFrom to the client the header names', async () => {
    const contexts: ConnectionContext[] = [];
    const { port, log } = await start({ ...BASE, allowFrom: ['192.0.2.0/24'] }, contexts);
    const sockets: Socket[] = [];
    expect(await exchange(port, header('192.0.2.9'), sockets)).toBe('hello\r\n');
    expect(await exchange(port, header('203.0.113.1'), sockets)).toBe('');
    expect(contexts.map((c) => [c.remoteAddress, c.remotePort])).toEqual([['192.0.2.9', 40000]]);
    expect(log.join('')).toContain('"client":"203.0.113.1"');
  });

  it('counts the per-address cap by the header client', async () => {
    const contexts: ConnectionContext[] = [];
    const { port } = await start(BASE, contexts, 1);
    const sockets: Socket[] = [];
    expect(await exchange(port, header('192.0.2.1'), sockets)).toBe('hello\r\n');
    // Same balancer, another client: not capped by the first one.
    expect(await exchange(port, header('192.0.2.2'), sockets)).toBe('hello\r\n');
    expect(await exchange(port, header('192.0.2.1'), sockets)).toBe('busy\r\n');
  });

  it('close() ends a connection still waiting for its header', async () => {
    const { port, listener } = await start(BASE, []);
    const socket = netConnect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    cleanups.push(() => socket.destroy());
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write('PROXY TCP4 192.0.2.1');
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const started = Date.now();
    await listener.close();
    await closed;
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});

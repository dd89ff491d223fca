/**
 * A listener's allowFrom: a client from elsewhere is closed before any greeting (and, on an
 * implicit-TLS listener, before the handshake), logged once per address per minute, and counted.
 */
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import type { ListenerConfig } from '../../../src/config/types.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { ProxyListener } from '../../../src/proxy/shared/listener.js';
import type { ProxySession } from '../../../src/proxy/shared/types.js';
import { getTestCerts } from '../../helpers/certs.js';
import pino from 'pino';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function recordingLogger(lines: string[]): pino.Logger {
  return pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
}

async function start(config: ListenerConfig, logLines: string[], metrics?: Metrics): Promise<number> {
  const listener = new ProxyListener(
    config,
    (socket): ProxySession => {
      socket.write('hello\r\n');
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      return { close: () => socket.destroy(), closed };
    },
    recordingLogger(logLines),
    { onRefused: (reason) => metrics?.connectionRefused('imap', reason) },
  );
  const { port } = await listener.listen();
  cleanups.push(() => listener.close());
  return port;
}

/** Everything the server sent before it closed (or "" when it closed at once). */
function received(port: number, localAddress: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: '127.0.0.1', localAddress });
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(text);
    }, 3_000);
    socket.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\r\n')) {
        clearTimeout(timer);
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.on('timeout', () => reject(new Error('timeout')));
  });
}

describe('listener allowFrom', () => {
  it('greets an allowed address; closes any other at once, logs it once a minute, counts it', async () => {
    const lines: string[] = [];
    const metrics = new Metrics();
    const port = await start(
      { host: '127.0.0.1', port: 0, tls: 'none', allowFrom: ['127.0.0.2/32', 'fd00::/8'] },
      lines,
      metrics,
    );
    expect(await received(port, '127.0.0.2')).toBe('hello\r\n');
    expect(await received(port, '127.0.0.3')).toBe('');
    expect(await received(port, '127.0.0.3')).toBe('');
    expect(await received(port, '127.0.0.4')).toBe('');
    const refusals = lines.filter((l) => l.includes('not in allowFrom'));
    expect(refusals).toHaveLength(2);
    expect(refusals[0]).toContain('"client":"127.0.0.3"');
    expect(await metrics.scrape()).toMatch(
      /xoauth_proxy_connections_refused_total\{protocol="imap",reason="not_allowed"\} 3/,
    );
  });

  it('an implicit-TLS listener refuses before the handshake', async () => {
    const certs = getTestCerts();
    const port = await start(
      {
        host: '127.0.0.1',
        port: 0,
        tls: 'implicit',
        cert: certs.certPem,
        key: certs.keyPem,
        allowFrom: ['127.0.0.2'],
      },
      [],
    );
    const handshake = (localAddress: string): Promise<string> =>
      new Promise((resolve) => {
        const raw = netConnect({ port, host: '127.0.0.1', localAddress });
        raw.on('error', () => undefined);
        const s = tlsConnect({ socket: raw, ca: certs.caPem, servername: 'localhost' });
        s.on('secureConnect', () => {
          s.destroy();
          resolve('secure');
        });
        s.on('error', (err) => resolve(`error: ${err.message}`));
      });
    expect(await handshake('127.0.0.2')).toBe('secure');
    expect(await handshake('127.0.0.3')).toMatch(/^error: /);
  });

  it('the config checks the entries and refuses an empty list', () => {
    const parse = (allowFrom: string): unknown =>
      parseConfig(`listen:\n  imap:\n    - { port: 0, allowFrom: ${allowFrom} }\n`, {
        file: 'c.yaml',
        env: {},
      });
    expect(parse('[192.168.0.0/16, "::1"]')).toBeTruthy();
    expect(() => parse('[192.168.0.0/33]')).toThrow(
      /c\.yaml:3:.*"192\.168\.0\.0\/33" is not an IP address or CIDR range/s,
    );
    expect(() => parse('[]')).toThrow(/empty allowFrom would refuse every client/);
  });
});

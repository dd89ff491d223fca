/**
 * Through a real HAProxy in TCP mode: it connects to the proxy's IMAP listener with a PROXY header
 * (send-proxy-v2, and send-proxy for v1), the login reaches the fake upstream, and the proxy's login
 * limiter and session log see the client's own address (127.0.0.5), not HAProxy's (127.0.0.1).
 * HAProxy missing: a failure under CI=true, a loud skip otherwise.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  literalLogin,
  sessionLines,
  startImapEnv,
  USER,
  type ImapEnv,
} from '../integration/imap/env.js';
import { RawImap } from '../integration/imap/raw-client.js';
import { pickFreePort } from '../helpers/ports.js';

const HAPROXY_BIN = process.env.HAPROXY_BIN ?? '/usr/sbin/haproxy';
const CLIENT_ADDRESS = '127.0.0.5';

function requireHaproxy(): boolean {
  const probe = spawnSync(HAPROXY_BIN, ['-v'], { encoding: 'utf8' });
  if (probe.status === 0) return true;
  const reason = `${HAPROXY_BIN} -v failed (${probe.error?.message ?? `exit ${String(probe.status)}`})`;
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error(`CI=true but HAProxy is not usable: ${reason}`);
  }
  console.warn(
    `\n*** SKIPPING HAProxy end-to-end test: ${reason}. It runs in CI (.ci/run installs haproxy). ***\n`,
  );
  return false;
}

/** Connects to 127.0.0.1:port from the client address; undefined while nothing listens there. */
function tryConnect(port: number): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress: CLIENT_ADDRESS });
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      resolve(socket);
    });
    socket.once('error', () => resolve(undefined));
  });
}

/** Polls until HAProxy's frontend accepts a connection (bounded), then closes that probe. */
async function waitListening(port: number, haproxy: () => string): Promise<void> {
  for (let i = 0; i < 100; i += 1) {
    const socket = await tryConnect(port);
    if (socket) {
      socket.destroy();
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`HAProxy did not listen on ${port}; its output: ${haproxy()}`);
}

/** Session lines of logged-in sessions (the readiness probes' sessions never log in). */
function loginLines(e: ImapEnv): Record<string, unknown>[] {
  return sessionLines(e).filter((l) => l.username === USER);
}

describe.runIf(requireHaproxy())('IMAP behind HAProxy (PROXY protocol)', () => {
  let env: ImapEnv | undefined;
  let haproxy: ChildProcess | undefined;
  let output = '';
  let dir = '';
  const ports = { v2: 0, v1: 0 };

  beforeAll(async () => {
    env = await startImapEnv({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      proxyProtocol: { trustedProxies: ['127.0.0.1'] },
    });
    ports.v2 = await pickFreePort();
    ports.v1 = await pickFreePort();
    dir = mkdtempSync(join(tmpdir(), 'haproxy-e2e-'));
    const config = join(dir, 'haproxy.cfg');
    writeFileSync(
      config,
      [
        'global',
        '  maxconn 100',
        'defaults',
        '  mode tcp',
        '  timeout connect 5s',
        '  timeout client 30s',
        '  timeout server 30s',
        'frontend imap_v2',
        `  bind 127.0.0.1:${ports.v2}`,
        '  default_backend proxy_v2',
        'frontend imap_v1',
        `  bind 127.0.0.1:${ports.v1}`,
        '  default_backend proxy_v1',
        'backend proxy_v2',
        `  server xoauth 127.0.0.1:${env.port} send-proxy-v2`,
        'backend proxy_v1',
        `  server xoauth 127.0.0.1:${env.port} send-proxy`,
        '',
      ].join('\n'),
    );
    // -db: stay in the foreground, so killing the child ends HAProxy.
    haproxy = spawn(HAPROXY_BIN, ['-db', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    haproxy.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    await waitListening(ports.v2, () => output);
    await waitListening(ports.v1, () => output);
  }, 30_000);

  afterAll(async () => {
    if (haproxy && haproxy.exitCode === null) {
      const exited = new Promise((resolve) => haproxy?.once('exit', resolve));
      haproxy.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
      if (haproxy.exitCode === null) haproxy.kill('SIGKILL');
    }
    await env?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const version of ['v2', 'v1'] as const) {
    it(`a login through HAProxy (${version} header) carries the client's address`, async () => {
      const e = env;
      if (!e) throw new Error('no environment');
      const before = loginLines(e).length;
      const attempts = e.authenticator.attempts.length;
      const upstreamLogins = e.upstream.authAttempts.length;
      const socket = await tryConnect(ports[version]);
      if (!socket) throw new Error(`HAProxy ${version} frontend refused`);
      const client = RawImap.wrap(socket);
      try {
        await client.waitFor('* OK');
        client.write(literalLogin('a1'));
        expect(await client.waitFor(/a1 (OK|NO|BAD).*\r\n/)).toMatch(/a1 OK /);
        client.write('a2 LOGOUT\r\n');
        await client.waitFor('a2 OK');
      } finally {
        client.close();
      }
      expect(e.upstream.authAttempts.length).toBe(upstreamLogins + 1);
      expect(e.authenticator.attempts.slice(attempts).map((a) => a.remoteAddress)).toEqual([CLIENT_ADDRESS]);
      await eventually(() => loginLines(e).length > before);
      expect(loginLines(e).at(-1)?.client).toMatch(/^127\.0\.0\.5:\d+$/);
    });
  }
});

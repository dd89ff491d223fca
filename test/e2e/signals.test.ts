/**
 * The real binary and its signals: SIGTERM stops accepting at once but lets a relayed IMAP session go
 * on until it ends (then the process exits 0 without waiting out the grace) or until
 * `settings.shutdownGrace` passes (then the proxy closes it); SIGHUP reloads and leaves it running.
 * Fakes for the authorization server and the upstream, so no Dovecot is needed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { getTestCerts } from '../helpers/certs.js';
import { startFakeAuthServer, type FakeAuthServer } from '../helpers/fake-auth-server.js';
import { startFakeImapServer, type FakeImapServer } from '../helpers/fake-imap-server.js';
import { startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.js';
import { RawImap } from '../integration/imap/raw-client.js';
import { portRefused, waitForOutput } from './support.js';

const USER = 'signals-user';
const PASSWORD = 'signals-Pa55word';
const EMAIL = 'signals@example.com';

let auth: FakeAuthServer | undefined;
let imap: FakeImapServer | undefined;
let proxy: ProxyProcess | undefined;
const clients: RawImap[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await proxy?.stop();
  proxy = undefined;
  await imap?.close();
  imap = undefined;
  await auth?.close();
  auth = undefined;
});

async function start(shutdownGrace: string): Promise<{ proxy: ProxyProcess; port: number }> {
  auth = await startFakeAuthServer();
  const fakeAuth = auth;
  imap = await startFakeImapServer({
    tls: 'implicit',
    checkAccessToken: (t) => fakeAuth.checkAccessToken(t),
  });
  const grant = auth.issueGrant(EMAIL);
  proxy = await startProxyProcess({
    auth,
    upstream: { host: '127.0.0.1', ca: getTestCerts().caPem, imap: { port: imap.port, tls: 'implicit' } },
    accounts: [{ username: USER, password: PASSWORD, email: EMAIL }],
    grants: [{ email: EMAIL, ...grant }],
    listen: { imap: ['none'] },
    settings: { shutdownGrace },
  });
  return { proxy, port: proxy.ports.imap.none! };
}

async function loggedIn(port: number): Promise<RawImap> {
  const client = await RawImap.connect(port);
  clients.push(client);
  await client.waitFor(/^\* OK/m);
  client.write(`a1 LOGIN ${USER} ${PASSWORD}\r\n`);
  await client.waitFor(/^a1 OK/m);
  return client;
}

describe('signals (the real binary)', () => {
  it('SIGTERM: no new connections, the relayed session keeps working until it ends, then exit 0', async () => {
    const { proxy: p, port } = await start('2m');
    const client = await loggedIn(port);
    p.kill('SIGTERM');
    await waitForOutput(p, 'shutting down');
    await waitForOutput(p, 'waiting for relayed sessions to end');
    expect(await portRefused(port)).toBe(true);
    // Still relayed, both ways.
    client.write('a2 NOOP\r\n');
    await client.waitFor(/^a2 OK/m);
    client.write('a3 LOGOUT\r\n');
    await client.waitFor(/^a3 OK/m);
    // The session ended by itself: the process is done long before the two minutes of grace.
    const exit = await p.waitExit(60_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(p.output()).toContain('"msg":"stopped"');
    expect(p.output()).not.toContain('shutdown grace over');
  });

  it('SIGTERM: a relayed session still open when the grace has passed is closed by the proxy', async () => {
    const { proxy: p, port } = await start('1s');
    const client = await loggedIn(port);
    p.kill('SIGTERM');
    await client.waitClosed(30_000);
    const exit = await p.waitExit(30_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(p.output()).toContain('shutdown grace over; closing sessions');
    expect(p.output()).toMatch(/"outcome":"shutdown"/);
  });

  it('SIGHUP: reloads (the same config), and the process keeps running and serving', async () => {
    const { proxy: p, port } = await start('30s');
    const before = await loggedIn(port);
    p.kill('SIGHUP');
    await waitForOutput(p, '"msg":"config reloaded"');
    before.write('a2 NOOP\r\n');
    await before.waitFor(/^a2 OK/m);
    const after = await loggedIn(port);
    after.write('a2 NOOP\r\n');
    await after.waitFor(/^a2 OK/m);
    await expect(p.waitExit(500)).rejects.toThrow(/still running/);
  });
});

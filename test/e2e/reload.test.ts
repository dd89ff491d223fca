/**
 * Reload with the real binary: `xoauth-proxy reload` (and SIGHUP) put a changed config in force
 * without a restart. New logins follow the new accounts at once, a relayed session is untouched, a
 * listener can be added and removed, and a broken file is refused while the old config keeps serving.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { hashPassword } from '../../src/credentials/password.js';
import { getTestCerts } from '../helpers/certs.js';
import { startFakeAuthServer, type FakeAuthServer } from '../helpers/fake-auth-server.js';
import { startFakeImapServer, type FakeImapServer } from '../helpers/fake-imap-server.js';
import { startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.js';
import { RawImap } from '../integration/imap/raw-client.js';
import { portRefused, waitForOutput } from './support.js';

const EMAIL = 'shared@example.com';
const ALICE = { username: 'alice', password: 'alice-Pa55word' };
const BOB = { username: 'bob', password: 'bob-Pa55word' };

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

async function login(
  port: number,
  who: { username: string; password: string },
): Promise<{ ok: boolean; client: RawImap }> {
  const client = await RawImap.connect(port);
  clients.push(client);
  await client.waitFor(/^\* OK/m);
  client.write(`a1 LOGIN ${who.username} ${who.password}\r\n`);
  const reply = await client.waitFor(/^a1 (OK|NO|BAD)[^\r\n]*/m);
  return { ok: /^a1 OK/m.test(reply), client };
}

describe('reload (the real binary)', () => {
  it('applies accounts and listeners at once, keeps relayed sessions, refuses a broken file', async () => {
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
      accounts: [{ ...ALICE, email: EMAIL }],
      grants: [{ email: EMAIL, ...grant }],
      listen: { imap: ['none'] },
      settings: { shutdownGrace: '5s' },
    });
    const p = proxy;
    const oldPort = p.ports.imap.none!;
    const relayed = await login(oldPort, ALICE);
    expect(relayed.ok).toBe(true);

    // alice out, bob in, and a second IMAP listener.
    const config = parseYaml(readFileSync(p.configFile, 'utf8')) as {
      accounts: Array<Record<string, unknown>>;
      listen: { imap: Array<Record<string, unknown>> };
    };
    config.accounts = [
      {
        username: BOB.username,
        email: EMAIL,
        connection: 'e2e',
        password: await hashPassword(BOB.password, { ln: 10, r: 8, p: 1 }),
      },
    ];
    config.listen.imap.push({ host: '127.0.0.1', port: 0, tls: 'none' });
    writeFileSync(p.configFile, stringifyYaml(config, { lineWidth: 0 }));
    const r = await p.cli(['reload', '--config', p.configFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/is valid; sent SIGHUP to xoauth-proxy \(pid \d+\)/);
    await waitForOutput(p, '"msg":"config reloaded"');
    const line =
      p
        .output()
        .split('\n')
        .find((l) => l.includes('"msg":"config reloaded"')) ?? '';
    const newPort = Number(/"started":\["imap 127\.0\.0\.1:(\d+)"\]/.exec(line)?.[1]);
    expect(newPort).toBeGreaterThan(0);

    // The relayed session never noticed.
    relayed.client.write('a2 NOOP\r\n');
    await relayed.client.waitFor(/^a2 OK/m);
    expect((await login(oldPort, ALICE)).ok).toBe(false);
    expect((await login(oldPort, BOB)).ok).toBe(true);
    expect((await login(newPort, BOB)).ok).toBe(true);

    // A broken file: refused with its position, and the running config keeps serving.
    writeFileSync(p.configFile, 'listen:\n  imap:\n    - port: nope\n');
    p.kill('SIGHUP');
    await waitForOutput(p, 'reload refused: the new config is invalid');
    expect(p.output()).toMatch(/config\.yaml:3:\d+: listen\.imap\[0\]\.port/);
    expect((await login(oldPort, BOB)).ok).toBe(true);

    // The first listener removed: its port closes, the session relayed through it goes on.
    config.listen.imap = [{ host: '127.0.0.1', port: newPort, tls: 'none' }];
    writeFileSync(p.configFile, stringifyYaml(config, { lineWidth: 0 }));
    p.kill('SIGHUP');
    await waitForOutput(p, '"msg":"config reloaded"', 2);
    expect(await portRefused(oldPort)).toBe(true);
    relayed.client.write('a3 NOOP\r\n');
    await relayed.client.waitFor(/^a3 OK/m);
    expect((await login(newPort, BOB)).ok).toBe(true);
  });
});

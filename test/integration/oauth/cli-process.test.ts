/**
 * The real `xoauth-proxy` CLI in a child process (tsx): consent with a pasted redirect URL, then
 * status, against the fake authorization server.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../../src/store/index.js';
import { startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';

const MAIN = fileURLToPath(new URL('../../../src/cli/main.ts', import.meta.url));

let fake: FakeAuthServer;
let dir: string;
let configFile: string;

beforeEach(async () => {
  fake = await startFakeAuthServer();
  dir = mkdtempSync(join(tmpdir(), 'xoauth-cli-'));
  configFile = join(dir, 'config.yaml');
  writeFileSync(
    configFile,
    `store:
  path: ./data/tokens.db
  keyFile: ./data/key
connections:
  - name: fake
    provider: custom
    clientId: cli-client
    clientSecret: cli-secret
    authorizeUrl: ${fake.authorizeUrl}
    tokenUrl: ${fake.tokenUrl}
    deviceCodeUrl: ${fake.deviceCodeUrl}
    userinfoUrl: ${fake.userinfoUrl}
    scopes: ['https://mail.google.com/']
    imap: { host: 127.0.0.1, port: 993 }
accounts:
  - username: alice@example.com
    connection: fake
  - username: '*@example.org'
    connection: fake
`,
  );
});
afterEach(async () => {
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'silent' };
  delete env.XOAUTH_PROXY_KEY;
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--config', configFile, ...args], {
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const listeners: Array<() => void> = [];
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const l of listeners) l();
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  const kill = setTimeout(() => child.kill('SIGKILL'), 90_000);
  void exit.finally(() => clearTimeout(kill));
  return {
    child,
    exit,
    stdout: () => stdout,
    stderr: () => stderr,
    waitFor: (re: RegExp) =>
      new Promise<RegExpMatchArray>((resolve, reject) => {
        const check = () => {
          const m = re.exec(stdout);
          if (m) resolve(m);
        };
        listeners.push(check);
        check();
        void exit.then(() => reject(new Error(`exited without ${re}\nstdout: ${stdout}\nstderr: ${stderr}`)));
      }),
  };
}

describe('xoauth-proxy consent / status (child process)', () => {
  it('consent with a pasted redirect URL stores the grant; status shows it without tokens', async () => {
    const run = cli(['consent', 'alice@example.com', '--no-browser']);
    const url = (await run.waitFor(/^ {2}(http\S+)$/m))[1]!;
    const res = await fetch(url, { redirect: 'manual' });
    expect(res.status).toBe(302);
    const location = res.headers.get('location')!;
    expect(location).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?.*code=/);
    run.child.stdin.write(`${location}\n`);
    expect(await run.exit).toBe(0);
    expect(run.stdout()).toContain('Consent stored for alice@example.com');
    expect(fake.lastTokenRequest?.get('client_secret')).toBe('cli-secret');

    // Another process reads what the CLI wrote.
    const store = await openStore({
      path: join(dir, 'data', 'tokens.db'),
      keyFile: join(dir, 'data', 'key'),
    });
    const record = (await store.getToken('alice@example.com'))!;
    await store.close();
    expect(record).toMatchObject({ state: 'active', identity: 'alice@example.com' });
    expect(fake.isRefreshTokenValid(record.refreshToken!)).toBe(true);

    const status = cli(['status', '--json']);
    expect(await status.exit).toBe(0);
    const rows = JSON.parse(status.stdout()) as Array<Record<string, unknown>>;
    expect(rows).toEqual([
      expect.objectContaining({ accountId: 'alice@example.com', state: 'active', hasRefreshToken: true }),
    ]);
    expect(status.stdout()).not.toContain(record.refreshToken!);
    expect(status.stdout()).not.toContain(record.accessToken!);

    const table = cli(['status']);
    expect(await table.exit).toBe(0);
    expect(table.stdout()).toMatch(/alice@example\.com\s+active/);
    expect(table.stdout()).not.toContain(record.accessToken!);
    // The store and key are private to the user.
    expect(readFileSync(join(dir, 'data', 'key'), 'utf8').trim()).toHaveLength(44);
  });

  it('consent through the loopback listener exits by itself while stdin stays open', async () => {
    const run = cli(['consent', 'alice@example.com', '--no-browser']);
    const url = (await run.waitFor(/^ {2}(http\S+)$/m))[1]!;
    const location = (await fetch(url, { redirect: 'manual' })).headers.get('location')!;
    expect((await fetch(location)).status).toBe(200);
    expect(await run.exit).toBe(0);
    expect(run.stdout()).toContain('Consent stored for alice@example.com');
  });

  it('a pattern account consents per address and an identity mismatch exits 1 naming both', async () => {
    fake.options.autoConsentEmail = 'mallory@example.org';
    const run = cli(['consent', 'bob@example.org', '--no-browser']);
    const url = (await run.waitFor(/^ {2}(http\S+)$/m))[1]!;
    const location = (await fetch(url, { redirect: 'manual' })).headers.get('location')!;
    run.child.stdin.write(`${location}\n`);
    expect(await run.exit).toBe(1);
    expect(run.stderr()).toMatch(/mallory@example\.org.*bob@example\.org/);
  });

  it('an unknown account is a usage error', async () => {
    const run = cli(['consent', 'nobody@elsewhere.test', '--no-browser']);
    expect(await run.exit).toBe(2);
    expect(run.stderr()).toContain('nobody@elsewhere.test');
  });
});

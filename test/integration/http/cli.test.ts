import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CliIO } from '../../../src/cli/context.js';
import { run } from '../../../src/cli/program.js';
import { loadConfig } from '../../../src/config/load.js';
import { verifyPassword } from '../../../src/credentials/password.js';
import { checkConsentLink } from '../../../src/oauth/consent-links.js';
import { openStore } from '../../../src/store/index.js';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

describe('consent-link and app-password commands', () => {
  let dir: string;
  let file: string;
  let env: NodeJS.ProcessEnv;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'xoauth-cli-'));
    file = join(dir, 'config.yaml');
    env = { XOAUTH_PROXY_KEY: randomBytes(32).toString('base64') };
    writeFileSync(
      file,
      `
listen:
  http:
    - port: 8080
store:
  path: ${join(dir, 'tokens.db')}
  keyFile: ${join(dir, 'key')}
http:
  publicUrl: https://mail-proxy.example.com/
connections:
  - name: google
    provider: google
    clientId: id.apps.googleusercontent.com
    clientSecret: s
  - name: app-only
    provider: microsoft
    clientId: 00000000-0000-0000-0000-000000000001
    clientSecret: s
    tenantId: 11111111-2222-3333-4444-555555555555
    grant: client_credentials
accounts:
  - username: alice@example.com
    connection: google
  - username: '*@example.org'
    connection: google
  - username: robot@contoso.com
    connection: app-only
`,
    );
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** The real program (src/cli/program.ts), in process, with captured output. */
  async function cli(...args: string[]): Promise<Result> {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    stderr.on('data', (c: Buffer) => (err += c.toString()));
    const io: CliIO = { stdout, stderr, stdin: new PassThrough(), env };
    const code = await run(['node', 'xoauth-proxy', '--config', file, ...args], io);
    return { code, stdout: out, stderr: err };
  }

  function store() {
    return openStore(loadConfig(file, { env }).store, { env });
  }

  it('prints a consent link on the public URL, valid for the given time, also for pattern accounts', async () => {
    const res = await cli('consent-link', 'bob@example.org', '--expires', '2h');
    expect(res.code).toBe(0);
    const url = res.stdout.trim();
    expect(url).toMatch(/^https:\/\/mail-proxy\.example\.com\/consent\/[A-Za-z0-9_-]{43}$/);
    expect(res.stderr).toContain('bob@example.org');
    const s = await store();
    try {
      const status = await checkConsentLink(s, url.split('/').pop() as string);
      expect(status.status).toBe('valid');
      if (status.status === 'valid') {
        expect(status.record.username).toBe('bob@example.org');
        expect(status.record.expiresAt - status.record.createdAt).toBe(2 * 3600_000);
      }
    } finally {
      await s.close();
    }
    const defaulted = await cli('consent-link', 'alice@example.com');
    expect(defaulted.code).toBe(0);
  });

  it('refuses unknown accounts, bad durations and app-only connections', async () => {
    expect((await cli('consent-link', 'nobody@else.test')).code).toBe(2);
    const bad = await cli('consent-link', 'alice@example.com', '--expires', 'soon');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--expires');
    expect((await cli('consent-link', 'robot@contoso.com')).stderr).toContain('no consent');
  });

  it('creates, lists and revokes app passwords by id and by label', async () => {
    const a = await cli('app-password', 'create', 'alice@example.com', '--label', 'phone');
    expect(a.code).toBe(0);
    const password = a.stdout.trim();
    expect(password).toMatch(/^[a-z2-9]{4}(-[a-z2-9]{4}){4}$/);
    const b = await cli('app-password', 'create', 'alice@example.com', '--label', 'phone');
    expect(b.stderr).toContain('"phone (2)"');

    const s = await store();
    const records = await s.listAppPasswords('alice@example.com');
    await s.close();
    expect(records.map((r) => r.label).sort()).toEqual(['phone', 'phone (2)']);
    const phone = records.find((r) => r.label === 'phone');
    expect(await verifyPassword(password, phone?.hash as string)).toBe(true);

    const list = await cli('app-password', 'list', 'alice@example.com');
    expect(list.stdout).toContain('phone (2)');
    expect(list.stdout).not.toContain(password);
    const json = JSON.parse(
      (await cli('app-password', 'list', 'alice@example.com', '--json')).stdout,
    ) as unknown[];
    expect(json).toHaveLength(2);
    expect(JSON.stringify(json)).not.toContain('scrypt');

    expect((await cli('app-password', 'revoke', 'alice@example.com', '--label', 'phone')).code).toBe(0);
    expect((await cli('app-password', 'revoke', 'alice@example.com', phone?.id as string)).code).toBe(1);
    const other = records.find((r) => r.label === 'phone (2)');
    expect((await cli('app-password', 'revoke', 'alice@example.com', other?.id as string)).code).toBe(0);
    expect((await cli('app-password', 'list', 'alice@example.com')).stdout).toContain('no app passwords');
    expect((await cli('app-password', 'revoke', 'alice@example.com')).code).toBe(2);
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConnectionConfig, ResolvedAccount } from '../../../src/config/types.js';
import { isProxyError } from '../../../src/errors.js';
import { runCliConsent, type CliConsentOptions } from '../../../src/oauth/consent/cli-consent.js';
import { parseRedirect } from '../../../src/oauth/consent/redirect.js';
import { IdentityMismatchError } from '../../../src/oauth/grants/identity.js';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/oauth/types.js';
import { fakeConnection, startFakeAuthServer, type FakeAuthServer } from '../../helpers/fake-auth-server.js';

let fake: FakeAuthServer;
let dir: string;
let store: Store;

beforeEach(async () => {
  fake = await startFakeAuthServer();
  dir = mkdtempSync(join(tmpdir(), 'xoauth-consent-'));
  store = await openStore({ path: join(dir, 'tokens.db'), keyFile: join(dir, 'key') }, { env: {} });
});
afterEach(async () => {
  await store.close();
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

function account(email: string, connection: ConnectionConfig = fakeConnection(fake)): ResolvedAccount {
  return { id: email.toLowerCase(), username: email, email, connection, entry: email };
}

/** Starts a consent; `url()` resolves with the printed authorization URL. */
function start(acct: ResolvedAccount, extra: Partial<CliConsentOptions> = {}) {
  const stdin = new PassThrough();
  let output = '';
  let onOutput: () => void = () => undefined;
  const out = (text: string) => {
    output += text;
    onOutput();
  };
  const done = runCliConsent({
    account: acct,
    store,
    settings: { tokenRequestTimeoutMs: 5000 },
    out,
    stdin,
    browser: false,
    ...extra,
  });
  const waitFor = (re: RegExp) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const m = re.exec(output);
        if (m) resolve(m);
      };
      onOutput = check;
      check();
      done.then(() => reject(new Error(`finished without ${re}: ${output}`)), reject);
    });
  return {
    stdin,
    done,
    output: () => output,
    waitFor,
    url: async () => (await waitFor(/^ {2}(http\S+)$/m))[1]!,
  };
}

/** Plays the browser at the fake: returns where it redirects to. */
async function authorize(url: string): Promise<string> {
  const res = await fetch(url, { redirect: 'manual' });
  expect(res.status).toBe(302);
  return res.headers.get('location')!;
}

describe('consent from the command line', () => {
  it('receives the redirect on the loopback listener, checks identity and stores the grant', async () => {
    const run = start(account('Alice@Example.com'));
    const url = await run.url();
    const location = await authorize(url);
    expect(location).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?/);
    expect(fake.lastAuthorizeRequest?.get('login_hint')).toBe('Alice@Example.com');
    const page = await fetch(location);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('close this tab');
    const result = await run.done;
    expect(result.kind).toBe('stored');
    const record = (await store.getToken('alice@example.com'))!;
    expect(record).toMatchObject({ state: 'active', identity: 'alice@example.com', displayName: 'Alice' });
    expect(fake.isRefreshTokenValid(record.refreshToken!)).toBe(true);
    expect(fake.checkAccessToken(record.accessToken!)).toBe('Alice@Example.com'); // as the fake signed in
    expect(run.output()).toContain('Consent stored for alice@example.com');
    expect(run.output()).not.toContain(record.refreshToken!);
    // The loopback listener is gone afterwards.
    await expect(fetch(location)).rejects.toThrow();
  });

  it('accepts the redirect URL pasted on stdin (browser on another machine)', async () => {
    const run = start(account('bob@example.com'));
    const location = await authorize(await run.url());
    run.stdin.write('some noise\n');
    run.stdin.write(`${location}\n`);
    expect((await run.done).kind).toBe('stored');
    expect((await store.getToken('bob@example.com'))?.identity).toBe('bob@example.com');
  });

  it('ignores a pasted redirect of another attempt and says so', async () => {
    const run = start(account('bob@example.com'));
    const location = await authorize(await run.url());
    const other = new URL(location);
    other.searchParams.set('state', 'someone-elses-state');
    run.stdin.write(`${other}\n`);
    await run.waitFor(/another consent attempt/);
    run.stdin.write(`${location}\n`);
    expect((await run.done).kind).toBe('stored');
  });

  it('refuses an identity mismatch naming both addresses, and stores nothing', async () => {
    fake.options.autoConsentEmail = 'eve@example.com';
    const run = start(account('alice@example.com'));
    const location = await authorize(await run.url());
    run.stdin.write(`${location}\n`);
    const err = await run.done.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdentityMismatchError);
    expect((err as Error).message).toMatch(/eve@example\.com.*alice@example\.com/);
    expect(await store.listTokens()).toEqual([]);
  });

  it('accepts an allowed delegate identity', async () => {
    fake.options.autoConsentEmail = 'boss@example.com';
    const run = start(
      account('shared@example.com', fakeConnection(fake, { allowedIdentities: ['boss@example.com'] })),
    );
    run.stdin.write(`${await authorize(await run.url())}\n`);
    expect((await run.done).kind).toBe('stored');
    expect((await store.getToken('shared@example.com'))?.identity).toBe('boss@example.com');
  });

  it('reports a denied consent and stores nothing', async () => {
    fake.options.denyConsent = true;
    const run = start(account('alice@example.com'));
    run.stdin.write(`${await authorize(await run.url())}\n`);
    const err = await run.done.catch((e: unknown) => e);
    expect(isProxyError(err, 'needs-consent')).toBe(true);
    expect((err as Error).message).toContain('access_denied');
    expect(await store.listTokens()).toEqual([]);
  });

  it('uses http://localhost for Microsoft (port ignored there) and 127.0.0.1 otherwise', async () => {
    const run = start(account('m@example.com', fakeConnection(fake, { provider: 'microsoft' })));
    const url = new URL(await run.url());
    expect(url.searchParams.get('redirect_uri')).toMatch(/^http:\/\/localhost:\d+\/$/);
    run.stdin.write(`${await authorize(url.toString())}\n`);
    expect((await run.done).kind).toBe('stored');
  });

  it('uses a fixed --port', async () => {
    const probe = await import('node:net').then(
      (net) =>
        new Promise<number>((resolve) => {
          const s = net.createServer().listen(0, '127.0.0.1', () => {
            const port = (s.address() as { port: number }).port;
            s.close(() => resolve(port));
          });
        }),
    );
    const run = start(account('p@example.com'), { port: probe });
    const url = new URL(await run.url());
    expect(url.searchParams.get('redirect_uri')).toBe(`http://127.0.0.1:${probe}/`);
    await fetch(await authorize(url.toString()));
    expect((await run.done).kind).toBe('stored');
  });

  it('runs the device flow with --device', async () => {
    fake.deviceScript(2, 'approve', 'dev@example.com');
    let now = Date.now();
    const run = start(account('dev@example.com', fakeConnection(fake, { provider: 'microsoft' })), {
      device: true,
      deviceFlow: {
        now: () => now,
        sleep: async (ms) => {
          now += ms;
        },
      },
    });
    expect((await run.done).kind).toBe('stored');
    expect(run.output()).toMatch(/open http:\/\/127\.0\.0\.1:\d+\/device .*enter the code [0-9A-F]{8}/);
    expect((await store.getToken('dev@example.com'))?.identity).toBe('dev@example.com');
    expect(fake.counts.deviceCode).toBe(3);
  });

  it('uses the device flow for a device_code connection without --device', async () => {
    fake.deviceScript(0, 'approve', 'd2@example.com');
    const run = start(account('d2@example.com', fakeConnection(fake, { grant: 'device_code' })), {
      deviceFlow: { sleep: async () => undefined },
    });
    expect((await run.done).kind).toBe('stored');
    expect(fake.counts.deviceAuthorization).toBe(1);
    expect(fake.counts.authorize).toBe(0);
  });

  it('says consent is not needed for client-credentials connections', async () => {
    const run = start(account('app@example.com', fakeConnection(fake, { grant: 'client_credentials' })));
    expect((await run.done).kind).toBe('not-needed');
    expect(run.output()).toContain('no user consent is needed');
    expect(fake.counts.token).toBe(0);
  });

  it('parseRedirect reads full URLs and bare queries, and checks state', async () => {
    expect(parseRedirect('http://127.0.0.1:5/?code=abc&state=s', 's')).toEqual({ code: 'abc' });
    expect(parseRedirect('?code=abc&state=s', 's')).toEqual({ code: 'abc' });
    expect(parseRedirect('code=abc&state=s', 's')).toEqual({ code: 'abc' });
    expect(parseRedirect('http://x/?error=access_denied&state=s', 's')).toEqual({ error: 'access_denied' });
    expect(parseRedirect('hello', 's')).toBeUndefined();
    expect(() => parseRedirect('http://x/?code=abc&state=t', 's')).toThrow(/another consent attempt/);
    expect(() => parseRedirect('http://x/?code=abc', 's')).toThrow(/another consent attempt/);
  });
});

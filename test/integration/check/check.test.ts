/**
 * `xoauth-proxy check` in-process against the fakes: real TLS, a real TokenManager over a SQLite
 * store, imapflow and nodemailer as the upstream clients, the proxy's own POP3 login.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CheckReport } from '../../../src/check/index.js';
import { SqliteStore } from '../../../src/store/sqlite-store.js';
import { TENANT_DISABLED_TEXT } from '../../helpers/fake-smtp-upstream.js';
import { secretsOf, startCheckEnv, type CheckTestEnv } from './env.js';

let env: CheckTestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

async function noSecrets(e: CheckTestEnv, text: string): Promise<void> {
  for (const secret of await secretsOf(e)) expect(text).not.toContain(secret);
}

const message = (n: number): Buffer =>
  Buffer.from(`From: bob@example.com\r\nSubject: m${n}\r\n\r\nbody ${n}\r\n`);

describe('xoauth-proxy check', () => {
  it('all OK: IMAP (capabilities, INBOX count), SMTP login, POP3 STAT; exit 0', async () => {
    env = await startCheckEnv({ listenPop3: true, messages: [message(1), message(2), message(3)] });
    const r = await env.check('alice@example.com');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('Checking alice@example.com with connection fake');
    expect(lines[1]).toMatch(
      /^IMAP {2}OK {4}127\.0\.0\.1:\d+ \(TLS, OAUTHBEARER\): INBOX has 3 messages; capabilities IMAP4rev1 .*IDLE/,
    );
    expect(lines[2]).toMatch(
      /^SMTP {2}OK {4}127\.0\.0\.1:\d+ \(TLS, XOAUTH2\): login accepted \(235 .*\), no mail sent$/,
    );
    expect(lines[3]).toMatch(
      /^POP3 {2}OK {4}127\.0\.0\.1:\d+ \(TLS, XOAUTH2\): 3 messages \(\d+ octets\) in the maildrop$/,
    );
    expect(lines[4]).toBe('All 3 checks passed.');
    // A real login each, no refresh needed, nothing sent, nothing deleted.
    expect(env.imap.authAttempts.map((a) => a.ok)).toEqual([true]);
    expect(env.smtp.authAttempts.map((a) => a.ok)).toEqual([true]);
    expect(env.pop3.authAttempts.map((a) => a.ok)).toEqual([true]);
    expect(env.auth.counts.refresh).toBe(0);
    expect(env.smtp.messages).toEqual([]);
    expect(env.pop3.deleted).toEqual([]);
    // imapflow asked only what the check needs: no IDLE, COMPRESS or ENABLE.
    const imapCommands = env.imap.commands.flat().join('\n');
    expect(imapCommands).not.toMatch(/^(IDLE|COMPRESS|ENABLE)/m);
    expect(imapCommands).toMatch(/^LOGOUT/m);
    // STATUS first; the fake refuses it, so INBOX is opened read-only (EXAMINE), never SELECTed.
    expect(imapCommands).toMatch(/^STATUS INBOX \(MESSAGES\)$[\s\S]*^EXAMINE INBOX$/m);
    expect(imapCommands).not.toMatch(/^SELECT/m);
    expect(lines[1]).toContain('APPENDLIMIT=35651584');
    expect(env.pop3.commands.flat()).toEqual(expect.arrayContaining(['STAT', 'QUIT']));
    await noSecrets(env, r.stdout);
  });

  it('default protocols: POP3 only when listen.pop3 is configured; flags pick exactly those asked', async () => {
    env = await startCheckEnv();
    const dflt = await env.check('alice@example.com');
    expect(dflt.code).toBe(0);
    expect(dflt.stdout).toMatch(/^IMAP {2}OK/m);
    expect(dflt.stdout).toMatch(/^SMTP {2}OK/m);
    expect(dflt.stdout).not.toMatch(/^POP3/m);
    expect(env.pop3.connections).toBe(0);

    const only = await env.check('alice@example.com', '--pop3', '--smtp');
    expect(only.code).toBe(0);
    expect(only.stdout).not.toMatch(/^IMAP/m);
    expect(only.stdout).toMatch(/^SMTP {2}OK[\s\S]*^POP3 {2}OK/m);
  });

  it('--json: one document with every check and its facts, nothing else on stdout', async () => {
    env = await startCheckEnv({ listenPop3: true, messages: [message(1)] });
    const r = await env.check('alice@example.com', '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report).toEqual({
      account: 'alice@example.com',
      email: 'alice@example.com',
      connection: 'fake',
      ok: true,
      checks: [
        {
          protocol: 'imap',
          ok: true,
          server: `127.0.0.1:${env.imap.port}`,
          tls: 'implicit',
          durationMs: expect.any(Number),
          mechanism: 'OAUTHBEARER',
          refreshed: false,
          imap: {
            capabilities: expect.arrayContaining(['IMAP4rev1', 'IDLE', 'UIDPLUS']),
            inboxMessages: 1,
            // The fake has no STATUS (it answers BAD), so the read-only EXAMINE fallback counts.
            inboxVia: 'EXAMINE',
          },
        },
        {
          protocol: 'smtp',
          ok: true,
          server: `127.0.0.1:${env.smtp.port}`,
          tls: 'implicit',
          durationMs: expect.any(Number),
          mechanism: 'XOAUTH2',
          refreshed: false,
          smtp: { authResponse: expect.stringMatching(/^235 /) },
        },
        {
          protocol: 'pop3',
          ok: true,
          server: `127.0.0.1:${env.pop3.port}`,
          tls: 'implicit',
          durationMs: expect.any(Number),
          mechanism: 'XOAUTH2',
          refreshed: false,
          pop3: { messages: 1, octets: message(1).length },
        },
      ],
    });
    await noSecrets(env, r.stdout);
  });

  it('an access token the store knows is expired is refreshed before the first login', async () => {
    env = await startCheckEnv({ grant: 'expired' });
    const before = (await env.record())!;
    const r = await env.check('alice@example.com', '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.checks.map((c) => [c.protocol, c.ok])).toEqual([
      ['imap', true],
      ['smtp', true],
    ]);
    // One refresh serves both protocols; no login was refused.
    expect(env.auth.counts.refresh).toBe(1);
    expect(env.imap.authAttempts.map((a) => a.ok)).toEqual([true]);
    expect(env.smtp.authAttempts.map((a) => a.ok)).toEqual([true]);
    const after = (await env.record())!;
    expect(after.accessToken).not.toBe(before.accessToken);
    expect(after.lastRefreshAt).toBeGreaterThan(before.updatedAt - 1);
    await noSecrets(env, r.stdout);
  });

  it('a rotated refresh token the store could not take at once is saved before check exits', async () => {
    env = await startCheckEnv({ grant: 'expired' });
    env.auth.options.rotateRefreshTokens = true;
    const seeded = env.seeded!.refreshToken;
    // The first write fails as a locked database would; the token manager keeps the rotated token in
    // memory, and only stopping it before the store closes writes it.
    const write = vi.spyOn(SqliteStore.prototype, 'updateToken').mockImplementationOnce(() => {
      throw new Error('database is locked');
    });
    try {
      const r = await env.check('alice@example.com', '--imap');
      expect(r.stdout).toMatch(/token store problem: Cannot save the refreshed grant/);
    } finally {
      write.mockRestore();
    }
    const stored = (await env.record())!.refreshToken!;
    expect(stored).not.toBe(seeded);
    expect(env.auth.isRefreshTokenValid(stored)).toBe(true);
    expect(env.auth.isRefreshTokenValid(seeded)).toBe(false);
  });

  it('an upstream that refuses the token once: forced refresh, then OK (IMAP and SMTP)', async () => {
    env = await startCheckEnv({ grant: 'stale' });
    const imap = await env.check('alice@example.com', '--imap');
    expect(imap.code).toBe(0);
    expect(imap.stdout).toMatch(/^IMAP {2}OK .*the first token was refused, a forced refresh fixed it$/m);
    expect(env.imap.authAttempts.map((a) => a.ok)).toEqual([false, true]);
    expect(env.auth.counts.refresh).toBe(1);
  });

  it('SMTP: the error challenge makes nodemailer ask for renew=true, which forces a refresh', async () => {
    env = await startCheckEnv({ grant: 'stale' });
    const r = await env.check('alice@example.com', '--smtp', '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.checks[0]).toMatchObject({ protocol: 'smtp', ok: true, refreshed: true });
    expect(env.smtp.authAttempts.map((a) => a.ok)).toEqual([false, true]);
    expect(env.auth.counts.refresh).toBe(1);
    expect(env.smtp.messages).toEqual([]);
  });

  it('POP3: a refused token is refreshed once by the shared login orchestration', async () => {
    env = await startCheckEnv({ grant: 'stale' });
    const r = await env.check('alice@example.com', '--pop3');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^POP3 {2}OK .*forced refresh fixed it$/m);
    expect(env.pop3.authAttempts.map((a) => a.ok)).toEqual([false, true]);
    expect(env.auth.counts.refresh).toBe(1);
  });

  it('a revoked grant: every line says to send a consent link, exit 1, account marked needs-consent', async () => {
    env = await startCheckEnv({ grant: 'expired' });
    env.auth.revoke(env.email);
    const r = await env.check('alice@example.com');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /^IMAP {2}FAIL {2}127\.0\.0\.1:\d+: needs consent: run xoauth-proxy consent-link alice@example\.com \(invalid_grant/m,
    );
    expect(r.stdout).toMatch(
      /^SMTP {2}FAIL {2}.*needs consent: run xoauth-proxy consent-link alice@example\.com/m,
    );
    expect(r.stdout).toMatch(/^2 of 2 checks failed\.$/m);
    expect((await env.record())?.state).toBe('needs-consent');
    // Nothing reached the mail servers.
    expect(env.imap.connections).toBe(0);
    expect(env.smtp.connections).toBe(0);
    await noSecrets(env, r.stdout + r.stderr);
  });

  it('no grant at all (and no store yet): needs consent, and the check creates no store', async () => {
    env = await startCheckEnv({ grant: 'none' });
    const r = await env.check('alice@example.com', '--json');
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.ok).toBe(false);
    expect(report.checks.map((c) => (c.ok ? 'ok' : c.error.kind))).toEqual([
      'needs-consent',
      'needs-consent',
    ]);
    const { existsSync } = await import('node:fs');
    expect(existsSync(env.storeSettings.path)).toBe(false);
  });

  it('token endpoint down: temporary, tokens kept, exit 1; the second protocol does not hit it again', async () => {
    env = await startCheckEnv({ grant: 'expired' });
    env.auth.failNext(5, 503);
    const r = await env.check('alice@example.com', '--json');
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as CheckReport;
    for (const c of report.checks) {
      expect(c.ok).toBe(false);
      if (!c.ok) {
        expect(c.error.kind).toBe('token-unavailable');
        expect(c.error.message).toMatch(/^token endpoint unreachable \(temporary, every token kept/);
      }
    }
    // Backoff: one request, not one per protocol.
    expect(env.auth.counts.refresh).toBe(1);
    const record = (await env.record())!;
    // One transient failure keeps the account active (it turns `failing` only when it keeps failing).
    expect(record.state).toBe('active');
    expect(record.lastError).toBeDefined();
    expect(record.refreshToken).toBe(env.seeded!.refreshToken);
  });

  it('SMTP AUTH disabled for the tenant (5.7.139): a clear action, no refresh attempted', async () => {
    env = await startCheckEnv();
    env.smtp.tenantAuthDisabled = true;
    const r = await env.check('alice@example.com');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^IMAP {2}OK/m);
    expect(r.stdout).toMatch(
      /^SMTP {2}FAIL {2}127\.0\.0\.1:\d+: SMTP AUTH disabled for the tenant \(5\.7\.139\): enable it/m,
    );
    expect(r.stdout).toMatch(/^1 of 2 checks failed\.$/m);
    expect(env.smtp.authAttempts).toHaveLength(1);
    expect(env.auth.counts.refresh).toBe(0);
    expect(TENANT_DISABLED_TEXT).toContain('5.7.139');
  });

  it('an upstream certificate from a CA the connection does not trust: a TLS error line per protocol', async () => {
    env = await startCheckEnv({ trustCa: false, listenPop3: true });
    const r = await env.check('alice@example.com', '--json');
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.checks).toHaveLength(3);
    for (const c of report.checks) {
      expect(c.ok).toBe(false);
      if (!c.ok) {
        expect(c.error.kind).toBe('tls');
        expect(c.error.message).toMatch(
          /^TLS certificate of 127\.0\.0\.1:\d+ is not trusted \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)/,
        );
        expect(c.error.message).toContain('set caFile on connection fake');
      }
    }
    expect(env.imap.authAttempts).toEqual([]);
    expect(env.smtp.authAttempts).toEqual([]);
    expect(env.pop3.authAttempts).toEqual([]);
  });

  it('STARTTLS upstreams (143/587/110 style) are checked with TLS required', async () => {
    env = await startCheckEnv({
      imapTls: 'starttls',
      smtpTls: 'starttls',
      pop3Tls: 'starttls',
      listenPop3: true,
    });
    const r = await env.check('alice@example.com');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^IMAP {2}OK {4}127\.0\.0\.1:\d+ \(STARTTLS,/m);
    expect(r.stdout).toMatch(/^SMTP {2}OK {4}127\.0\.0\.1:\d+ \(STARTTLS,/m);
    expect(r.stdout).toMatch(/^POP3 {2}OK {4}127\.0\.0\.1:\d+ \(STARTTLS,/m);
  });

  it('a *@domain account works with a concrete address; the pattern itself and unknown accounts exit 2', async () => {
    env = await startCheckEnv({ email: 'bob@example.org' });
    const ok = await env.check('bob@example.org', '--imap');
    expect(ok.code).toBe(0);
    expect(env.imap.authAttempts).toEqual([expect.objectContaining({ user: 'bob@example.org', ok: true })]);

    const pattern = await env.check('*@example.org');
    expect(pattern.code).toBe(2);
    expect(pattern.stderr).toContain('give a concrete address');
    const unknown = await env.check('nobody@elsewhere.test');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('nobody@elsewhere.test');
  });
});

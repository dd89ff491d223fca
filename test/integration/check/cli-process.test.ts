/**
 * The real binary (`node --import tsx src/cli/main.ts`) in a child process: exit codes 0/1/2, and no
 * token in stdout or stderr, even with the debug log switched on.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { secretsOf, startCheckEnv, type CheckTestEnv } from './env.js';

const MAIN = fileURLToPath(new URL('../../../src/cli/main.ts', import.meta.url));

let env: CheckTestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

function cli(
  configFile: string,
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...extraEnv };
  delete childEnv.XOAUTH_PROXY_KEY;
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'check', ...args, '--config', configFile], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const kill = setTimeout(() => child.kill('SIGKILL'), 90_000);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(kill);
      resolve({ code: code ?? -1, stdout, stderr });
    }),
  );
}

describe('xoauth-proxy check (child process)', () => {
  it('exit 0 when every check passes, 1 after the grant is revoked; never a token, even in debug logs', async () => {
    // 'stale': the first token is refused upstream and refreshed, so several tokens pass through.
    env = await startCheckEnv({ grant: 'stale', listenPop3: true });
    const ok = await cli(env.configFile, ['alice@example.com'], { LOG_LEVEL: 'debug' });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^IMAP {2}OK/m);
    expect(ok.stdout).toMatch(/^SMTP {2}OK/m);
    expect(ok.stdout).toMatch(/^POP3 {2}OK/m);
    expect(ok.stdout).toMatch(/^All 3 checks passed\.$/m);
    // The debug log went to stderr, and it is there (so the assertion below has something to read).
    expect(ok.stderr).toContain('access token refreshed');
    const secrets = await secretsOf(env);
    expect(secrets.length).toBeGreaterThanOrEqual(3);
    for (const s of secrets) {
      expect(ok.stdout).not.toContain(s);
      expect(ok.stderr).not.toContain(s);
    }

    env.auth.revoke(env.email);
    const revoked = await cli(env.configFile, ['alice@example.com', '--imap', '--json']);
    expect(revoked.code).toBe(1);
    const report = JSON.parse(revoked.stdout) as { ok: boolean; checks: Array<{ error?: { kind: string } }> };
    expect(report.ok).toBe(false);
    expect(report.checks[0]?.error?.kind).toBe('needs-consent');
    for (const s of await secretsOf(env)) {
      expect(revoked.stdout).not.toContain(s);
      expect(revoked.stderr).not.toContain(s);
    }
  });

  it('exit 2 for an unknown account and for a pattern instead of an address', async () => {
    env = await startCheckEnv();
    const unknown = await cli(env.configFile, ['nobody@elsewhere.test']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no account in');
    expect(unknown.stdout).toBe('');
    const pattern = await cli(env.configFile, ['*@example.org']);
    expect(pattern.code).toBe(2);
  });
});

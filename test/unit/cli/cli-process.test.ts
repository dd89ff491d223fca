/**
 * The real entry point as a child process: exit codes, stdout/stderr, and `start` against the real
 * daemon with the example config (ports switched to 0 so nothing collides).
 */
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { verifyPassword } from '../../../src/credentials/password.js';
import { tempDir } from '../config/helpers.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const MAIN = join(ROOT, 'src/cli/main.ts');
/** tsx's loader by absolute URL, so the child can run from a directory without node_modules. */
const TSX = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(file: string, args: string[], options: { input?: string; cwd?: string } = {}): Promise<Result> {
  return new Promise((resolvePromise) => {
    const child = execFile(
      file,
      args,
      { cwd: options.cwd ?? ROOT, timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '' } },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code ?? null) : 0;
        resolvePromise({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}

const cli = (args: string[], options: { input?: string; cwd?: string } = {}) =>
  exec(process.execPath, ['--import', TSX, MAIN, ...args], options);

// Each test starts Node with tsx; on a loaded 2-core machine that alone can take several seconds.
describe('xoauth-proxy as a process', { timeout: 90_000 }, () => {
  it('npx tsx src/cli/main.ts check-config config.example.yaml exits 0', async () => {
    const r = await exec('npx', ['tsx', 'src/cli/main.ts', 'check-config', 'config.example.yaml']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('config.example.yaml is valid.');
  });

  it('a broken copy exits 2 and points at the line', async () => {
    const dir = tempDir();
    const broken = join(dir, 'config.yaml');
    const text = readFileSync(join(ROOT, 'config.example.yaml'), 'utf8').replace(
      'connection: google',
      'connection: gmail',
    );
    writeFileSync(broken, text);
    const line = text.split('\n').findIndex((l) => l.includes('connection: gmail')) + 1;
    const r = await cli(['check-config', broken]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `${broken}:${line}:5: accounts[0].connection: unknown connection "gmail". Use one of: google, microsoft.\n`,
    );
  });

  it('schema prints JSON', async () => {
    const r = await cli(['schema']);
    expect(r.code).toBe(0);
    const schema = JSON.parse(r.stdout) as { $schema: string; title: string };
    expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
    expect(schema.title).toBe('xoauth-proxy configuration');
  });

  it('hash-password reads stdin and prints a hash that verifies', async () => {
    const r = await cli(['hash-password'], { input: 'pässwörd 1\n' });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    await expect(verifyPassword('pässwörd 1', r.stdout.trim())).resolves.toBe(true);
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await cli(['--version']);
    expect(r).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });

  it('start without config.yaml falls back to config.example.yaml, prints the banner, stops on SIGTERM', async () => {
    const dir = tempDir();
    // The example as shipped, with every listener on port 0 so this test never collides with anything.
    const doc = parseDocument(readFileSync(join(ROOT, 'config.example.yaml'), 'utf8'));
    for (const protocol of ['imap', 'smtp', 'pop3', 'http']) doc.setIn(['listen', protocol, 0, 'port'], 0);
    writeFileSync(join(dir, 'config.example.yaml'), doc.toString());
    copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'));

    const child = spawn(process.execPath, ['--import', TSX, MAIN, 'start'], {
      cwd: dir,
      env: { ...process.env, NODE_OPTIONS: '', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await new Promise<void>((resolveBanner, reject) => {
        const timer = setTimeout(() => reject(new Error(`no banner in time:\n${stderr}\n${stdout}`)), 45_000);
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          if (stderr.includes('Stop with Ctrl+C;')) {
            clearTimeout(timer);
            resolveBanner();
          }
        });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`exited early with ${code}:\n${stderr}\n${stdout}`));
        });
      });
      expect(stderr).toContain('warning: no ./config.yaml found, starting with ./config.example.yaml');
      expect(stderr).toMatch(/is running \(config: .*config\.example\.yaml\)/);
      expect(stderr).toMatch(/^ {2}IMAP {2}127\.0\.0\.1:[1-9]\d* {2}\(no TLS\)$/m);
      expect(stderr).toMatch(/^Consent and admin pages: http:\/\//m);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});

import { EventEmitter } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { COMMANDS } from '../../../src/cli/commands/index.js';
import { configJsonSchema } from '../../../src/config/schema.js';
import { verifyPassword } from '../../../src/credentials/password.js';
import type { Daemon } from '../../../src/daemon.js';
import { tempDir, yaml } from '../config/helpers.js';
import { fakeTty, runCli } from './helpers.js';

/** vi.waitFor options: generous, for a loaded machine. */
const WAIT = { timeout: 10_000, interval: 10 };
const ROOT = resolve(import.meta.dirname, '../../..');
const EXAMPLE = join(ROOT, 'config.example.yaml');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

describe('cli basics', () => {
  it('--version prints the package version', async () => {
    const r = await runCli(['--version']);
    expect(r).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
  });

  const ALL_COMMANDS = [
    'start',
    'reload',
    'check-config',
    'consent',
    'consent-link',
    'status',
    'check',
    'app-password',
    'schema',
    'hash-password',
    'store',
  ];

  it('--help lists every command', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const name of ALL_COMMANDS) {
      expect(r.stdout).toContain(name);
    }
    expect(r.stdout).toContain('--config <file>');
  });

  it('every command has --help', async () => {
    expect(COMMANDS.length).toBe(ALL_COMMANDS.length);
    for (const name of ALL_COMMANDS) {
      const r = await runCli([name, '--help']);
      expect(r.code, name).toBe(0);
      expect(r.stdout, name).toContain(`Usage: xoauth-proxy ${name}`);
    }
  });

  it('usage errors exit 2', async () => {
    expect((await runCli(['no-such-command'])).code).toBe(2);
    const r = await runCli(['schema', '--no-such-option']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--no-such-option'");
    expect((await runCli([])).code).toBe(2);
  });
});

describe('check-config', () => {
  it('validates config.example.yaml and explains it', async () => {
    const r = await runCli(['check-config', EXAMPLE]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${EXAMPLE} is valid.`);
    expect(r.stdout).toContain('  google: google, grant authorization_code, with client secret');
    expect(r.stdout).toContain(
      '    servers: IMAP outlook.office365.com:993 (TLS), SMTP smtp.office365.com:587 (STARTTLS), POP3 outlook.office365.com:995 (TLS)',
    );
    expect(r.stdout).toContain('  alice@gmail.com -> google: mailbox alice@gmail.com; app passwords only');
    expect(r.stdout).toContain(
      '  *@example.com -> microsoft: any address at example.com (and its subdomains), each with its own consent; app passwords only',
    );
    expect(r.stdout).toContain('  IMAP  127.0.0.1:1143  (no TLS)');
    expect(r.stdout).toContain('  HTTP  127.0.0.1:8080  (no TLS)');
  });

  it('explains which accounts send through Microsoft Graph', async () => {
    const dir = tempDir({
      'c.yaml': yaml(
        'connections:',
        '  - name: m365',
        '    provider: microsoft',
        '    clientId: x',
        '    tenantId: contoso.onmicrosoft.com',
        '    send: auto',
        '  - name: graph-only',
        '    provider: microsoft',
        '    clientId: x',
        '    tenantId: contoso.onmicrosoft.com',
        '    send: graph',
        '    saveToSentItems: false',
        'accounts:',
        '  - username: "*@contoso.com"',
        '    connection: m365',
        '  - username: scanner@contoso.com',
        '    connection: graph-only',
      ),
    });
    const r = await runCli(['check-config', join(dir, 'c.yaml')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      '    sending: SMTP relay; a mailbox whose SMTP login is refused with 535 5.7.139 (SMTP AUTH off) switches to Microsoft Graph https://graph.microsoft.com/v1.0 (scopes https://graph.microsoft.com/Mail.Send; copies in Sent Items)',
    );
    expect(r.stdout).toContain(
      '    sending: every message through Microsoft Graph https://graph.microsoft.com/v1.0 (scopes https://graph.microsoft.com/Mail.Send; no copies in Sent Items); the proxy answers MAIL/RCPT/DATA itself',
    );
    expect(r.stdout).toContain('    consent asks for the mail and the Graph scopes at once');
    expect(r.stdout).toContain('sends by SMTP, or Graph if SMTP AUTH is off');
    expect(r.stdout).toContain(
      '  scanner@contoso.com -> graph-only: mailbox scanner@contoso.com; app passwords only; sends through Graph',
    );
  });

  it('takes the file from --config too (before or after the command)', async () => {
    expect((await runCli(['--config', EXAMPLE, 'check-config'])).code).toBe(0);
    expect((await runCli(['check-config', '--config', EXAMPLE])).code).toBe(0);
  });

  it('warns about risky but valid choices', async () => {
    const dir = tempDir({
      'c.yaml': yaml(
        'listen:',
        '  imap:',
        '    - host: 0.0.0.0',
        '      port: 1143',
        'connections:',
        '  - name: g',
        '    provider: google',
        '    clientId: x',
      ),
    });
    const r = await runCli(['check-config', join(dir, 'c.yaml')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      'Warnings:\n  - IMAP listener 0.0.0.0:1143 is reachable from the network without TLS: passwords cross it in clear text. Add TLS, or allowFrom with the networks that may connect.\n  - Connection g is not used by any account.',
    );
  });

  it('warns when consent links or notifications would travel over plain http to another host', async () => {
    const config = (publicUrl: string, webhook: string): string =>
      yaml(
        'http:',
        `  publicUrl: ${publicUrl}`,
        'notify:',
        `  webhook: ${webhook}`,
        'connections:',
        '  - name: g',
        '    provider: google',
        '    clientId: x',
        'accounts:',
        '  - username: a@example.com',
        '    connection: g',
      );
    const dir = tempDir({
      'open.yaml': config('http://mail.example.com:8080', 'http://hooks.example.com/x'),
      'fine.yaml': config('https://mail.example.com', 'http://127.0.0.1:9000/hook'),
    });
    const open = await runCli(['check-config', join(dir, 'open.yaml')]);
    expect(open.code).toBe(0);
    expect(open.stdout).toContain(
      '  - http.publicUrl http://mail.example.com:8080 is plain http on mail.example.com:8080: consent links',
    );
    expect(open.stdout).toContain(
      '  - notify.webhook is plain http on hooks.example.com: notifications carry',
    );
    const fine = await runCli(['check-config', join(dir, 'fine.yaml')]);
    expect(fine.stdout).not.toMatch(/plain http/);
  });

  it('a broken config exits 2 with file:line:col', async () => {
    const dir = tempDir({
      'c.yaml': yaml('connections:', '  - name: g', '    provider: gogle', '    clientId: x'),
    });
    const file = join(dir, 'c.yaml');
    const r = await runCli(['check-config', file]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `${file}:3:5: connections[0].provider: must be one of: google, microsoft, azure, custom.\n`,
    );
  });

  it('a password on a pattern account exits 2, naming the key and why', async () => {
    const dir = tempDir({
      'c.yaml': yaml(
        'connections:',
        '  - name: g',
        '    provider: google',
        '    clientId: x',
        'accounts:',
        "  - username: '*@example.com'",
        '    connection: g',
        "    password: '$scrypt$ln=15,r=8,p=1$Zm2Vf6Xc2JtGCgEeXlB6sA$mB3v7q4m0ZqHnD9c1rC8zJt3bVw2oV8q6Vb1pQGzY2E'",
      ),
    });
    const file = join(dir, 'c.yaml');
    const r = await runCli(['check-config', file]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `${file}:8:5: accounts[0].password: password is not allowed on a pattern account: one password for every address at example.com would let whoever knows it open every mailbox of the domain. Remove it; a pattern account's users log in with their own app passwords, made after their consent.\n`,
    );
  });

  it('a missing file exits 2', async () => {
    const r = await runCli(['check-config', '/nonexistent/config.yaml']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('/nonexistent/config.yaml: cannot read the config file (ENOENT)');
  });
});

describe('schema', () => {
  it('prints the JSON schema', async () => {
    const r = await runCli(['schema']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(configJsonSchema());
  });
});

describe('hash-password', () => {
  it('hashes the first line of a piped stdin', async () => {
    const r = await runCli(['hash-password'], { input: 'correct horse\r\nignored\n' });
    expect(r.code).toBe(0);
    const hash = r.stdout.trim();
    expect(r.stdout).toBe(`${hash}\n`);
    await expect(verifyPassword('correct horse', hash)).resolves.toBe(true);
  });

  it('accepts a last line without newline', async () => {
    const r = await runCli(['hash-password'], { input: 'pw' });
    await expect(verifyPassword('pw', r.stdout.trim())).resolves.toBe(true);
  });

  it('refuses an empty stdin', async () => {
    const r = await runCli(['hash-password'], { input: '\n' });
    expect(r).toEqual({ code: 2, stdout: '', stderr: 'error: no password on stdin (expected one line)\n' });
  });

  it('asks twice on a terminal without echo', async () => {
    const tty = fakeTty();
    const done = runCli(['hash-password'], { stdin: tty });
    // typed with a typo fixed by backspace; the prompt echoes nothing of it
    tty.write('secrex\u007ft\r');
    await vi.waitFor(() => expect(tty.rawModes).toEqual([true, false, true]), WAIT);
    tty.write('secret\r');
    const r = await done;
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('New password: \nRepeat password: \n');
    await expect(verifyPassword('secret', r.stdout.trim())).resolves.toBe(true);
    expect(tty.rawModes).toEqual([true, false, true, false]);
  });

  it('fails when the two entries differ', async () => {
    const tty = fakeTty();
    const done = runCli(['hash-password'], { stdin: tty });
    tty.write('one\r');
    await vi.waitFor(() => expect(tty.rawModes.length).toBe(3), WAIT);
    tty.write('two\r');
    const r = await done;
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('error: the passwords do not match');
  });

  it('Ctrl+C at the prompt aborts', async () => {
    const tty = fakeTty();
    const done = runCli(['hash-password'], { stdin: tty });
    tty.write('abc\u0003');
    const r = await done;
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error: aborted');
  });
});

describe('start', () => {
  function fakeDaemon(): Daemon & { close: ReturnType<typeof vi.fn> } {
    return {
      listeners: [
        { protocol: 'imap', host: '127.0.0.1', port: 1143, tls: 'none' },
        { protocol: 'smtp', host: '::1', port: 1465, tls: 'implicit' },
        { protocol: 'http', host: '127.0.0.1', port: 8080, tls: 'none' },
      ],
      httpUrl: 'http://localhost:8080',
      close: vi.fn(() => Promise.resolve()),
      reload: vi.fn(() => Promise.resolve({ started: [], retired: [], failed: [] })),
    };
  }

  it('starts the daemon with the loaded config, prints the banner, and closes on SIGTERM', async () => {
    const signals = new EventEmitter();
    const daemon = fakeDaemon();
    const startDaemon = vi.fn(() => Promise.resolve(daemon));
    const done = runCli(['start', '--config', EXAMPLE], { deps: { startDaemon, signals } });
    await vi.waitFor(() => expect(signals.listenerCount('SIGTERM')).toBe(1), WAIT);
    expect(startDaemon).toHaveBeenCalledTimes(1);
    expect(startDaemon.mock.calls[0]).toBeDefined();
    signals.emit('SIGTERM');
    const r = await done;
    expect(r.code).toBe(0);
    expect(daemon.close).toHaveBeenCalledTimes(1);
    expect(r.stderr).toBe(
      [
        `xoauth-proxy ${VERSION} is running (config: ${EXAMPLE})`,
        '  IMAP  127.0.0.1:1143  (no TLS)',
        '  SMTP  [::1]:1465  (TLS)',
        '  HTTP  127.0.0.1:8080  (no TLS)',
        'Consent and admin pages: http://localhost:8080',
        'Stop with Ctrl+C; reload the config with `kill -HUP` or `xoauth-proxy reload`.',
        '',
      ].join('\n'),
    );
    expect(signals.listenerCount('SIGINT')).toBe(0);
    expect(signals.listenerCount('SIGTERM')).toBe(0);
  });

  it('SIGHUP reloads a valid config, refuses a broken one and keeps running; SIGTERM passes the grace', async () => {
    const signals = new EventEmitter();
    const daemon = fakeDaemon();
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const dir = tempDir({ 'c.yaml': readFileSync(EXAMPLE, 'utf8') });
    const file = join(dir, 'c.yaml');
    const done = runCli(['start', '--config', file], {
      deps: { startDaemon: () => Promise.resolve(daemon), signals, logger: () => logger },
    });
    await vi.waitFor(() => expect(signals.listenerCount('SIGHUP')).toBe(1), WAIT);
    signals.emit('SIGHUP');
    await vi.waitFor(() => expect(daemon.reload).toHaveBeenCalledTimes(1), WAIT);
    await vi.waitFor(() => expect(lines.some((l) => l.includes('config reloaded'))).toBe(true), WAIT);
    writeFileSync(file, 'connections:\n  - name: g\n    provider: gogle\n    clientId: x\n');
    signals.emit('SIGHUP');
    await vi.waitFor(() => expect(lines.some((l) => l.includes('reload refused'))).toBe(true), WAIT);
    const refused = lines.find((l) => l.includes('reload refused')) ?? '';
    expect(refused).toContain(`${file}:3:5: connections[0].provider: must be one of`);
    expect(daemon.reload).toHaveBeenCalledTimes(1);
    expect(daemon.close).not.toHaveBeenCalled();
    signals.emit('SIGTERM');
    const r = await done;
    expect(r.code).toBe(0);
    // The example config's settings.shutdownGrace: 30s.
    expect(daemon.close).toHaveBeenCalledWith({ graceMs: 30_000 });
    expect(lines.some((l) => l.includes('"graceMs":30000') && l.includes('shutting down'))).toBe(true);
    expect(lines.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
    expect(signals.listenerCount('SIGHUP')).toBe(0);
  });

  it('a second signal during shutdown forces the exit', async () => {
    const signals = new EventEmitter();
    const daemon = fakeDaemon();
    daemon.close.mockImplementation(() => new Promise(() => {}));
    const forceExit = vi.fn();
    void runCli(['start', '--config', EXAMPLE], {
      deps: { startDaemon: () => Promise.resolve(daemon), signals, forceExit },
    });
    await vi.waitFor(() => expect(signals.listenerCount('SIGINT')).toBe(1), WAIT);
    signals.emit('SIGINT');
    expect(forceExit).not.toHaveBeenCalled();
    signals.emit('SIGINT');
    expect(forceExit).toHaveBeenCalledWith(1);
  });

  it('a signal during startup stops the daemon as soon as it is up', async () => {
    const signals = new EventEmitter();
    const daemon = fakeDaemon();
    let started: () => void = () => {};
    const startDaemon = vi.fn(() => new Promise<Daemon>((r) => (started = () => r(daemon))));
    const done = runCli(['start', '--config', EXAMPLE], { deps: { startDaemon, signals } });
    await vi.waitFor(() => expect(startDaemon).toHaveBeenCalled(), WAIT);
    signals.emit('SIGTERM');
    started();
    const r = await done;
    expect(r.code).toBe(0);
    expect(daemon.close).toHaveBeenCalledTimes(1);
  });

  it('a failing shutdown exits 1', async () => {
    const signals = new EventEmitter();
    const daemon = fakeDaemon();
    daemon.close.mockImplementation(() => Promise.reject(new Error('boom')));
    const done = runCli(['start', '--config', EXAMPLE], {
      deps: { startDaemon: () => Promise.resolve(daemon), signals },
    });
    await vi.waitFor(() => expect(signals.listenerCount('SIGTERM')).toBe(1), WAIT);
    await vi.waitFor(() => expect(daemon.close).not.toHaveBeenCalled(), WAIT);
    signals.emit('SIGTERM');
    const r = await done;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error: boom');
  });

  it('a daemon that fails to start exits 1', async () => {
    const r = await runCli(['start', '--config', EXAMPLE], {
      deps: {
        startDaemon: () =>
          Promise.reject(new Error('listen EADDRINUSE: address already in use 127.0.0.1:1143')),
      },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error: listen EADDRINUSE: address already in use 127.0.0.1:1143\n');
  });

  it('an invalid config exits 2 before starting anything', async () => {
    const startDaemon = vi.fn();
    const r = await runCli(['start', '--config', '/nonexistent.yaml'], { deps: { startDaemon } });
    expect(r.code).toBe(2);
    expect(startDaemon).not.toHaveBeenCalled();
  });
});

/**
 * A real PostgreSQL server for tests: one per test file (started lazily, on the first `createDatabase()`),
 * in a fresh temp dir, on 127.0.0.1 and a free port, trust auth, durability off (a test cluster that
 * is thrown away needs no fsync). Each test file gets its own database from `createDatabase()`; outage
 * tests use `stop()` / `start()` / `restart()` and `blackhole()` (the server accepts TCP connections in
 * the kernel but never answers, like a host that vanished without a RST).
 *
 * PostgreSQL refuses to run as root, so as root (CI containers) initdb and pg_ctl run as the `postgres`
 * system user and the temp dir belongs to it.
 *
 * Usage in a test file:
 *   const pg = usePostgres();           // registers afterAll(stop + remove) for this file
 *   const db = await pg.createDatabase(); // { url, drop() }
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll } from 'vitest';
import { pickFreePort } from './ports.js';

const run = promisify(execFile);

const SUPERUSER = 'postgres';
const OS_USER = 'postgres';

export interface TestDatabase {
  /** postgres://postgres@127.0.0.1:<port>/<name> (trust auth: no password). */
  url: string;
  name: string;
  /** Drops the database (disconnecting whoever is still in it). */
  drop(): Promise<void>;
}

/** Where initdb and pg_ctl live: the PATH, or Debian's versioned directory (newest first). */
export function findPostgresBin(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir;
  }
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const dir = join(base, v, 'bin');
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir;
  }
  return undefined;
}

function availability(): { ok: true; bin: string } | { ok: false; reason: string } {
  const bin = findPostgresBin();
  if (!bin)
    return { ok: false, reason: 'PostgreSQL (initdb, pg_ctl) is not installed (apt-get install postgresql)' };
  if (isRoot()) {
    try {
      execFileSync('id', ['-u', OS_USER], { stdio: 'ignore' });
    } catch {
      return {
        ok: false,
        reason: `running as root but there is no \`${OS_USER}\` user to run PostgreSQL as`,
      };
    }
  }
  return { ok: true, bin };
}

/**
 * Decides for a test file whether it runs: PostgreSQL present -> run; missing under CI=true -> throw
 * (a failure, never a skip); missing locally -> skip, loudly. The same convention as the Dovecot suites.
 */
export function requirePostgres(): boolean {
  const a = availability();
  if (a.ok) return true;
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error(`CI=true but PostgreSQL is not usable: ${a.reason}`);
  }
  console.warn(
    `\n*** SKIPPING PostgreSQL tests: ${a.reason}. They run in CI (.ci/run installs postgresql). ***\n`,
  );
  return false;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export class PostgresServer {
  readonly #bin: string;
  readonly #dir: string;
  readonly #data: string;
  readonly port: number;
  #running = false;
  #frozen: number[] = [];

  private constructor(bin: string, dir: string, port: number) {
    this.#bin = bin;
    this.#dir = dir;
    this.#data = join(dir, 'data');
    this.port = port;
  }

  static async create(): Promise<PostgresServer> {
    const a = availability();
    if (!a.ok) throw new Error(a.reason);
    const dir = mkdtempSync(join(tmpdir(), 'xoauth-pg-'));
    if (isRoot()) {
      const uid = Number(execFileSync('id', ['-u', OS_USER], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', OS_USER], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
    }
    const server = new PostgresServer(a.bin, dir, await pickFreePort());
    await server.#exec('initdb', [
      '-D',
      server.#data,
      '-U',
      SUPERUSER,
      '-A',
      'trust',
      '--no-sync',
      '--no-instructions',
      '-E',
      'UTF8',
      '--locale=C',
    ]);
    await server.start();
    live.add(server);
    return server;
  }

  /** Base URL of the server's `postgres` maintenance database. */
  get adminUrl(): string {
    return `postgres://${SUPERUSER}@127.0.0.1:${this.port}/postgres`;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Runs a PostgreSQL tool, as the postgres user when we are root. */
  async #exec(tool: string, args: string[]): Promise<string> {
    const path = join(this.#bin, tool);
    const [cmd, argv] = isRoot() ? ['runuser', ['-u', OS_USER, '--', path, ...args]] : [path, args];
    try {
      const { stdout } = await run(cmd, argv, { timeout: 60_000, cwd: this.#dir });
      return stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`${tool} failed: ${e.stderr || e.message}\n${this.log()}`);
    }
  }

  #serverOptions(): string {
    return [
      `-p ${this.port}`,
      '-c listen_addresses=127.0.0.1',
      // The Unix socket stays in our temp dir, so no /var/run/postgresql is needed.
      `-c unix_socket_directories=${this.#dir}`,
      '-c fsync=off',
      '-c synchronous_commit=off',
      '-c full_page_writes=off',
      '-c max_connections=100',
      '-c shared_buffers=16MB',
    ].join(' ');
  }

  async start(): Promise<void> {
    if (this.#running) return;
    await this.#exec('pg_ctl', [
      '-D',
      this.#data,
      '-l',
      join(this.#dir, 'postgres.log'),
      '-o',
      this.#serverOptions(),
      '-w',
      '-t',
      '60',
      'start',
    ]);
    this.#running = true;
  }

  /** Stops the server; `immediate` drops connections at once (a crash, as far as clients can tell). */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!this.#running) return;
    this.unblackhole();
    await this.#exec('pg_ctl', ['-D', this.#data, '-m', mode, '-w', '-t', '60', 'stop']);
    this.#running = false;
  }

  /** Stop and start on the same port: every connection breaks, then the server is back. */
  async restart(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  /**
   * Freezes the postmaster and all its children (SIGSTOP): connections are accepted by the kernel but
   * nothing answers, and running queries hang. `unblackhole()` (SIGCONT) brings it back.
   */
  blackhole(): void {
    if (!this.#running || this.#frozen.length > 0) return;
    const pid = this.#postmasterPid();
    const pids = [pid, ...childrenOf(pid)];
    for (const p of pids) process.kill(p, 'SIGSTOP');
    this.#frozen = pids;
  }

  unblackhole(): void {
    for (const p of this.#frozen) {
      try {
        process.kill(p, 'SIGCONT');
      } catch {
        // already gone
      }
    }
    this.#frozen = [];
  }

  #postmasterPid(): number {
    const first = readFileSync(join(this.#data, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '';
    const pid = Number(first.trim());
    if (!Number.isInteger(pid) || pid <= 0) throw new Error('no postmaster.pid');
    return pid;
  }

  /** A fresh, empty database on this server. */
  async createDatabase(): Promise<TestDatabase> {
    const name = `t_${randomBytes(6).toString('hex')}`;
    await this.#admin(`CREATE DATABASE ${name}`);
    return {
      name,
      url: `postgres://${SUPERUSER}@127.0.0.1:${this.port}/${name}`,
      drop: async () => {
        if (this.#running) await this.#admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      },
    };
  }

  async #admin(sql: string): Promise<void> {
    const client = new pg.Client({ connectionString: this.adminUrl, connectionTimeoutMillis: 10_000 });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  }

  log(): string {
    try {
      return readFileSync(join(this.#dir, 'postgres.log'), 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }

  /** Stops the server and removes its directory. */
  async destroy(): Promise<void> {
    live.delete(this);
    try {
      await this.stop('immediate');
    } finally {
      rmSync(this.#dir, { recursive: true, force: true });
    }
  }

  /** For process exit: synchronous, best effort. */
  destroySync(): void {
    live.delete(this);
    this.unblackhole();
    if (this.#running) {
      try {
        const path = join(this.#bin, 'pg_ctl');
        const args = ['-D', this.#data, '-m', 'immediate', '-w', 'stop'];
        if (isRoot()) execFileSync('runuser', ['-u', OS_USER, '--', path, ...args], { stdio: 'ignore' });
        else execFileSync(path, args, { stdio: 'ignore' });
      } catch {
        // nothing more to do at exit
      }
      this.#running = false;
    }
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name is in parentheses and may hold spaces; the parent pid is the second field after it.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === pid) out.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** Servers not yet destroyed, so a worker that exits without afterAll leaves none behind. */
const live = new Set<PostgresServer>();
process.once('exit', () => {
  for (const server of [...live]) server.destroySync();
});

export interface PostgresHandle {
  /** The file's server (started on first use). */
  server(): Promise<PostgresServer>;
  /** A fresh database on the file's server; dropped in afterAll if the test did not. */
  createDatabase(): Promise<TestDatabase>;
}

/**
 * One server for the calling test file, started lazily and torn down in afterAll. Call at the top
 * level of the file (it registers the hook).
 */
export function usePostgres(): PostgresHandle {
  let starting: Promise<PostgresServer> | undefined;
  const server = (): Promise<PostgresServer> => (starting ??= PostgresServer.create());
  afterAll(async () => {
    if (!starting) return;
    const s = await starting.catch(() => undefined);
    await s?.destroy();
  });
  return {
    server,
    createDatabase: async () => (await server()).createDatabase(),
  };
}

/**
 * Benchmark servers run in child processes (so each one's RSS is its own, and the client load does
 * not share its event loop). They talk to the runner over the fork IPC channel: one request, one reply.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export type Role = 'upstream' | 'proxy' | 'bare';

interface Request {
  id: number;
  method: string;
  params: unknown;
}
type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export interface Memory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

export class Child {
  readonly #proc: ChildProcess;
  readonly #waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #next = 1;
  #exited: Promise<number | null>;

  constructor(
    readonly role: Role,
    options: { cpuProfDir?: string; callgrindDir?: string; nodeFlags?: string[] } = {},
  ) {
    // BENCH_NODE_FLAGS: more flags for every child (e.g. --trace-gc, to see why a collection ran).
    const extra = process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
    const nodeArgv = ['--import', 'tsx', '--expose-gc', ...(options.nodeFlags ?? []), ...extra];
    if (options.cpuProfDir) nodeArgv.push('--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`);
    // Under callgrind the child's instructions can be counted: deterministic where CPU time on a
    // shared machine moves by more than the effect being looked for (see callgrind.ts).
    const execArgv = options.callgrindDir
      ? [
          '--tool=callgrind',
          // One count per thread: the main thread's is the relay's own work; V8's compiler and GC
          // helper threads run when they will and are counted apart.
          '--separate-threads=yes',
          // BENCH_VALGRIND_ARGS: more callgrind options (e.g. --cache-sim=yes for simulated cache misses).
          ...(process.env.BENCH_VALGRIND_ARGS?.split(' ').filter(Boolean) ?? []),
          `--callgrind-out-file=${options.callgrindDir}/${role}.%p`,
          process.execPath,
          ...nodeArgv,
        ]
      : nodeArgv;
    this.#proc = fork(fileURLToPath(new URL('./child.ts', import.meta.url)), [role], {
      ...(options.callgrindDir ? { execPath: 'valgrind' } : {}),
      execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#proc.on('message', (m: Reply) => {
      const w = this.#waiting.get(m.id);
      if (!w) return;
      this.#waiting.delete(m.id);
      if (m.ok) w.resolve(m.result);
      else w.reject(new Error(`${role}: ${m.error}`));
    });
    this.#exited = new Promise((resolve) => {
      this.#proc.once('exit', (code) => {
        for (const w of this.#waiting.values()) w.reject(new Error(`${role} child exited (${code})`));
        this.#waiting.clear();
        resolve(code);
      });
    });
  }

  get pid(): number | undefined {
    return this.#proc.pid;
  }

  call<T>(method: string, params: unknown = {}, timeoutMs = 120_000): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`${this.role}.${method} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.#proc.send({ id, method, params } satisfies Request);
    });
  }

  memory(): Promise<Memory> {
    return this.call<Memory>('memory');
  }

  /** Asks the child to close its servers and exit (so a --cpu-prof file is written); kills it after 15 s. */
  async stop(): Promise<void> {
    if (this.#proc.exitCode !== null || this.#proc.signalCode !== null) return;
    const timer = setTimeout(() => this.#proc.kill('SIGKILL'), 15_000);
    this.#proc.send({ id: 0, method: 'shutdown', params: {} } satisfies Request);
    await this.#exited;
    clearTimeout(timer);
  }
}

/** Child side: serve requests with `handlers` until 'shutdown'. */
export function serveRpc(
  handlers: Record<string, (params: never) => unknown>,
  shutdown: () => Promise<void>,
): void {
  process.on('message', (req: Request) => {
    if (req.method === 'shutdown') {
      void shutdown()
        .catch(() => undefined)
        .finally(() => process.exit(0));
      return;
    }
    const handler = handlers[req.method];
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`no method ${req.method}`);
        return handler(req.params as never);
      })
      .then(
        (result) => process.send?.({ id: req.id, ok: true, result: result ?? null } satisfies Reply),
        (err: Error) =>
          process.send?.({ id: req.id, ok: false, error: err.stack ?? err.message } satisfies Reply),
      );
  });
  // The runner going away must not leave servers behind.
  process.on('disconnect', () => process.exit(0));
}

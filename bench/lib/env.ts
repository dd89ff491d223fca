/**
 * Starts the three server processes (upstream fakes, proxy, bare relay) and the accounts every
 * benchmark uses. All on 127.0.0.1; the runner process is the client.
 */
import { hashPassword } from '../../src/credentials/password.js';
import { getTestCerts } from '../../test/helpers/certs.js';
import type { Credentials, Mode } from './client.js';
import type { MailboxSpec } from './messages.js';
import type { ProxyHostOptions, SeededAccount } from './proxy-host.js';
import type { Experiment } from './experiments.js';
import { Child } from './rpc.js';

export const PASSWORD = 'bench-pass-0123';
/** Accounts with valid tokens (latency, throughput, sessions, and the direct/bare storm). */
export const WARM_ACCOUNTS = 20;

/**
 * A fixed floor for V8's old generation, for the relays whose CPU is compared and for the upstream
 * fakes behind every benchmark. Why: at Node's default heap sizing a process with a small heap (about
 * 11 MB live here) that relays big transfers may settle into one full collection every 20-30 MB
 * relayed, or may not, depending on its own history: the relayed chunks' backing stores count
 * against an allocation limit that V8 set only about twice the live heap, and where that limit lands
 * depends on when and how busy the process was at its last full collection. The same relay code then
 * costs 1.0 or 2.3 ms/MB per transfer. That once made the bare relay look 14-56 % dearer than the
 * proxy on average, and one forced collection in both made the proxy cycle as well: GC state, not
 * relay code (docs/performance.md). With the floor neither cycles. `BENCH_HEAP_FLOOR_MB=0`: Node's
 * defaults, to see the cycles.
 */
export function heapFloorFlags(): string[] {
  const mb = Number(process.env.BENCH_HEAP_FLOOR_MB ?? 64);
  return mb > 0 ? [`--initial-old-space-size=${mb}`] : [];
}

interface Grant {
  accessToken: string;
  refreshToken: string;
  expiresAt: number;
}

export interface Env {
  /**
   * An A/A run: the "proxy" child is a second bare relay (log in to it as to the bare one), to see
   * how far two identical relays differ in this run.
   */
  aa: boolean;
  ca: string;
  upstream: Child;
  proxy: Child;
  bare: Child;
  imap: Record<Mode, number>;
  smtp: Record<Mode, number>;
  /** The bare relay and the proxy with the client leg in clear text (the upstream leg is TLS). */
  imapPlain: Record<'bare' | 'proxy', number>;
  smtpPlain: Record<'bare' | 'proxy', number>;
  warm: Credentials[];
  /** Fresh accounts per storm run, every stored access token expired. */
  storm: Record<string, Credentials[]>;
  /**
   * The upstreams behind delay relays (`delayMs` each way), and a proxy (pooled and, as `proxyNoPool`,
   * not), a bare relay and the direct client all going through them. `stop()` ends those children.
   */
  startDelayed(delayMs: number): Promise<{
    imap: Record<Mode, number> & { proxyNoPool: number };
    proxy: Child;
    proxyNoPool: Child;
    stop(): Promise<void>;
  }>;
  /** Node flags the proxy and bare relay children run with (`heapFloorFlags()` or none). */
  middleFlags: string[];
  /** Replaces the proxy and bare relay children with fresh ones (clean RSS baseline), with `flags`. */
  restartMiddle(flags?: string[]): Promise<void>;
  /** One more proxy child with the same accounts, on a shared PostgreSQL store. */
  startPostgresProxy(postgres: { url: string; key: string; seed: boolean }): Promise<{
    child: Child;
    imapPort: number;
    smtpPort: number;
  }>;
  stop(): Promise<void>;
}

export async function startEnv(options: {
  mailboxes: MailboxSpec;
  stormSets: string[];
  stormAccounts: number;
  cpuProfDir?: string;
  /** The proxy and bare relay children under valgrind's callgrind, dumps in this directory. */
  callgrindDir?: string;
  experiments?: Experiment[];
  /** See `Env.aa`. */
  aa?: boolean;
  /** Node flags for the proxy and bare relay children (default none). */
  middleFlags?: string[];
}): Promise<Env> {
  const certs = getTestCerts();
  const upstream = new Child('upstream', { nodeFlags: heapFloorFlags() });
  const up = await upstream.call<{
    imapPort: number;
    smtpPort: number;
    tokenUrl: string;
    authorizeUrl: string;
  }>('start', { cert: certs.certPem, key: certs.keyPem, mailboxes: options.mailboxes });
  // The production default cost (ln=15): what the credential cache is there to avoid.
  const passwordHash = await hashPassword(PASSWORD);
  const seeded: SeededAccount[] = [];
  const warm: Credentials[] = [];
  for (let i = 0; i < WARM_ACCOUNTS; i++) {
    const email = `user${String(i).padStart(2, '0')}@bench.test`;
    const g = await upstream.call<Grant>('issueGrant', { email });
    seeded.push({ username: email, email, ...g });
    warm.push({ username: email, password: PASSWORD, email, accessToken: g.accessToken });
  }
  const storm: Record<string, Credentials[]> = {};
  for (const set of options.stormSets) {
    storm[set] = [];
    for (let i = 0; i < options.stormAccounts; i++) {
      const email = `${set}${String(i).padStart(2, '0')}@bench.test`;
      const g = await upstream.call<Grant>('issueGrant', { email, ttlSeconds: 0 });
      seeded.push({ username: email, email, ...g, expiresAt: Date.now() - 60_000 });
      storm[set].push({ username: email, password: PASSWORD, email, accessToken: g.accessToken });
    }
  }

  // What every proxy child gets: the same upstreams, accounts and grants.
  const proxyOptions: ProxyHostOptions = {
    cert: certs.certPem,
    key: certs.keyPem,
    ca: certs.caPem,
    tokenUrl: up.tokenUrl,
    authorizeUrl: up.authorizeUrl,
    imapPort: up.imapPort,
    smtpPort: up.smtpPort,
    passwordHash,
    accounts: seeded,
    experiments: options.experiments ?? [],
    // The metrics' event-loop monitor wakes the process every 10 ms: under valgrind, where a
    // transfer takes some 50 times as long, that work would count against every MB relayed.
    ...(options.callgrindDir ? { metrics: false } : {}),
  };
  // Loading the program under callgrind takes about a minute.
  const startTimeoutMs = options.callgrindDir ? 600_000 : 120_000;
  const startMiddle = async (
    nodeFlags: string[],
  ): Promise<{ proxy: Child; bare: Child; p: Ports; b: Ports }> => {
    const profile = {
      ...(options.cpuProfDir ? { cpuProfDir: options.cpuProfDir } : {}),
      ...(options.callgrindDir ? { callgrindDir: options.callgrindDir } : {}),
      nodeFlags,
    };
    const proxy = new Child(options.aa ? 'bare' : 'proxy', profile);
    const bare = new Child('bare', profile);
    const bareOptions = {
      cert: certs.certPem,
      key: certs.keyPem,
      ca: certs.caPem,
      imapPort: up.imapPort,
      smtpPort: up.smtpPort,
    };
    const [p, b] = await Promise.all([
      proxy.call<Ports>('start', options.aa ? bareOptions : proxyOptions, startTimeoutMs),
      bare.call<Ports>('start', bareOptions, startTimeoutMs),
    ]);
    return { proxy, bare, p, b };
  };
  type Ports = { imapPort: number; smtpPort: number; imapPlainPort: number; smtpPlainPort: number };

  const first = await startMiddle(options.middleFlags ?? []);
  if (options.cpuProfDir)
    console.error(`profiling: proxy pid ${first.proxy.pid}, bare relay pid ${first.bare.pid}`);
  const env: Env = {
    aa: options.aa === true,
    middleFlags: options.middleFlags ?? [],
    ca: certs.caPem,
    upstream,
    proxy: first.proxy,
    bare: first.bare,
    imap: { direct: up.imapPort, bare: first.b.imapPort, proxy: first.p.imapPort },
    smtp: { direct: up.smtpPort, bare: first.b.smtpPort, proxy: first.p.smtpPort },
    imapPlain: { bare: first.b.imapPlainPort, proxy: first.p.imapPlainPort },
    smtpPlain: { bare: first.b.smtpPlainPort, proxy: first.p.smtpPlainPort },
    warm,
    storm,
    async startDelayed(delayMs) {
      const relay = await upstream.call<Ports>('startDelayRelays', { delayMs });
      const proxy = new Child('proxy');
      const proxyNoPool = new Child('proxy');
      const bare = new Child('bare');
      const [p, q, b] = await Promise.all([
        proxy.call<Ports>('start', { ...proxyOptions, ...relay }),
        proxyNoPool.call<Ports>('start', { ...proxyOptions, ...relay, upstreamPool: false }),
        bare.call<Ports>('start', { cert: certs.certPem, key: certs.keyPem, ca: certs.caPem, ...relay }),
      ]);
      return {
        imap: { direct: relay.imapPort, bare: b.imapPort, proxy: p.imapPort, proxyNoPool: q.imapPort },
        proxy,
        proxyNoPool,
        async stop() {
          await Promise.all([proxy.stop(), proxyNoPool.stop(), bare.stop()]);
        },
      };
    },
    async startPostgresProxy(postgres) {
      const child = new Child('proxy');
      const ports = await child.call<Ports>('start', { ...proxyOptions, postgres });
      return { child, ...ports };
    },
    async restartMiddle(flags = []) {
      await Promise.all([env.proxy.stop(), env.bare.stop()]);
      const next = await startMiddle(flags);
      env.middleFlags = flags;
      if (options.cpuProfDir)
        console.error(`profiling: proxy pid ${next.proxy.pid}, bare relay pid ${next.bare.pid}`);
      env.proxy = next.proxy;
      env.bare = next.bare;
      env.imap = { direct: up.imapPort, bare: next.b.imapPort, proxy: next.p.imapPort };
      env.smtp = { direct: up.smtpPort, bare: next.b.smtpPort, proxy: next.p.smtpPort };
      env.imapPlain = { bare: next.b.imapPlainPort, proxy: next.p.imapPlainPort };
      env.smtpPlain = { bare: next.b.smtpPlainPort, proxy: next.p.smtpPlainPort };
    },
    async stop() {
      await Promise.all([env.proxy.stop(), env.bare.stop(), upstream.stop()]);
    },
  };
  return env;
}

/**
 * Entry point of a benchmark child process: `upstream` (fake auth server + fast IMAP + fast SMTP),
 * `proxy` (the proxy under test) or `bare` (the bare TLS relay). Driven over IPC (see rpc.ts).
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { startFakeAuthServer, type FakeAuthServer } from '../../test/helpers/fake-auth-server.js';
import { startBareRelay, type BareRelay } from './bare-relay.js';
import { startDelayRelay, type DelayRelay } from './delay-relay.js';
import { startFastImap, type FastImapServer } from './fast-imap.js';
import { startFastSmtp, type FastSmtpServer } from './fast-smtp.js';
import { upstreamTlsStats } from './experiments.js';
import { makeMailboxes, type MailboxSpec } from './messages.js';
import { startProxyHost, type ProxyHost, type ProxyHostOptions } from './proxy-host.js';
import { serveRpc, type Memory, type Role } from './rpc.js';

const role = process.argv[2] as Role;

async function memory(): Promise<Memory> {
  const gc = (globalThis as { gc?: () => void }).gc;
  // Two passes and a tick in between: TLS and socket wrappers are freed by weak callbacks.
  gc?.();
  await new Promise((r) => setTimeout(r, 50));
  gc?.();
  const m = process.memoryUsage();
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
  };
}

/** User and system CPU time so far, apart (µs): whether a difference is in our code or the kernel's. */
function cpuSplit(): { user: number; system: number } {
  const u = process.cpuUsage();
  return { user: u.user, system: u.system };
}

/** CPU time used by this process so far (user + system), in microseconds. */
function cpu(): number {
  const u = cpuSplit();
  return u.user + u.system;
}

/** The young generation's current size (V8 grows it with the survival rate): MB. */
function youngGeneration(): number {
  const space = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  return (space?.space_size ?? 0) / 1e6;
}

/** Garbage collection so far: count and milliseconds by kind (a diagnostic beside `cpu`). */
const gcTotals: Record<string, { count: number; ms: number }> = {};
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = String((entry as unknown as { detail?: { kind?: number } }).detail?.kind ?? 'unknown');
    const t = (gcTotals[kind] ??= { count: 0, ms: 0 });
    t.count += 1;
    t.ms += entry.duration;
  }
}).observe({ entryTypes: ['gc'] });
function gc(): Record<string, { count: number; ms: number }> {
  return structuredClone(gcTotals);
}

if (role === 'upstream') {
  let auth: FakeAuthServer | undefined;
  let imap: FastImapServer | undefined;
  let smtp: FastSmtpServer | undefined;
  const delays: DelayRelay[] = [];
  serveRpc(
    {
      /** A delay relay in front of the fast IMAP and SMTP servers (see delay-relay.ts). */
      async startDelayRelays(p: { delayMs: number }) {
        if (!imap || !smtp) throw new Error('not started');
        const i = await startDelayRelay({ targetPort: imap.port, delayMs: p.delayMs });
        const s = await startDelayRelay({ targetPort: smtp.port, delayMs: p.delayMs });
        delays.push(i, s);
        return { imapPort: i.port, smtpPort: s.port };
      },
      delayStats() {
        return delays.map((d) => ({ port: d.port, ...d.stats }));
      },
      resetDelayStats() {
        for (const d of delays) d.resetStats();
      },
      async start(p: { cert: string; key: string; mailboxes: MailboxSpec }) {
        auth = await startFakeAuthServer();
        const check = (t: string): string | undefined => auth?.checkAccessToken(t);
        imap = await startFastImap({
          cert: p.cert,
          key: p.key,
          checkAccessToken: check,
          mailboxes: makeMailboxes(p.mailboxes),
        });
        smtp = await startFastSmtp({ cert: p.cert, key: p.key, checkAccessToken: check });
        return {
          imapPort: imap.port,
          smtpPort: smtp.port,
          tokenUrl: auth.tokenUrl,
          authorizeUrl: auth.authorizeUrl,
        };
      },
      issueGrant(p: { email: string; ttlSeconds?: number }) {
        if (!auth) throw new Error('not started');
        return auth.issueGrant(
          p.email,
          p.ttlSeconds === undefined ? {} : { accessTokenTtlSeconds: p.ttlSeconds },
        );
      },
      stats() {
        return { auth: { ...auth?.counts }, imap: { ...imap?.stats }, smtp: { ...smtp?.stats } };
      },
      resetImapStats() {
        imap?.resetStats();
      },
      memory,
      cpu,
      gc,
    },
    async () => {
      await Promise.all([imap?.close(), smtp?.close(), ...delays.map((d) => d.close())]);
      await auth?.close();
    },
  );
} else if (role === 'proxy') {
  let host: ProxyHost | undefined;
  serveRpc(
    {
      async start(p: ProxyHostOptions) {
        host = await startProxyHost(p);
        return {
          imapPort: host.imapPort,
          smtpPort: host.smtpPort,
          imapPlainPort: host.imapPlainPort,
          smtpPlainPort: host.smtpPlainPort,
        };
      },
      scryptCalls() {
        return host?.scryptCalls() ?? 0;
      },
      poolStats() {
        return host?.poolStats() ?? null;
      },
      clearCredentialCache() {
        host?.clearCredentialCache();
      },
      async warmCredentials(p: { usernames: string[]; password: string }) {
        await host?.warmCredentials(p.usernames, p.password);
      },
      memory,
      cpu,
      cpuSplit,
      youngGeneration,
      gc,
    },
    async () => {
      if (upstreamTlsStats.full + upstreamTlsStats.resumed > 0) {
        console.error(
          `  proxy upstream TLS: ${upstreamTlsStats.full} full, ${upstreamTlsStats.resumed} resumed handshakes`,
        );
      }
      await host?.close();
    },
  );
} else if (role === 'bare') {
  let imap: BareRelay | undefined;
  let smtp: BareRelay | undefined;
  let imapPlain: BareRelay | undefined;
  let smtpPlain: BareRelay | undefined;
  serveRpc(
    {
      async start(p: { cert: string; key: string; ca: string; imapPort: number; smtpPort: number }) {
        imap = await startBareRelay({ ...p, upstreamPort: p.imapPort });
        smtp = await startBareRelay({ ...p, upstreamPort: p.smtpPort });
        imapPlain = await startBareRelay({ ...p, upstreamPort: p.imapPort, plain: true });
        smtpPlain = await startBareRelay({ ...p, upstreamPort: p.smtpPort, plain: true });
        return {
          imapPort: imap.port,
          smtpPort: smtp.port,
          imapPlainPort: imapPlain.port,
          smtpPlainPort: smtpPlain.port,
        };
      },
      memory,
      cpu,
      cpuSplit,
      youngGeneration,
      gc,
    },
    async () => {
      await Promise.all([imap?.close(), smtp?.close(), imapPlain?.close(), smtpPlain?.close()]);
    },
  );
} else {
  console.error(`unknown role ${role}`);
  process.exit(2);
}

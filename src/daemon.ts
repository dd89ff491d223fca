/**
 * The running proxy: opens the token store, starts the token manager and one server per configured
 * listener, and closes them all on shutdown. Wiring only; every piece lives in its own module.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { Config, ListenerConfig, Protocol, TlsMode } from './config/types.js';
import { LocalAuthenticator } from './credentials/authenticator.js';
import { consentHintFor } from './http/consent-hint.js';
import { publicBaseUrl } from './config/public-url.js';
import { createHttpServer } from './http/server.js';
import { Metrics } from './metrics/metrics.js';
import { createConfiguredNotifier, notifyOnTokenEvent } from './notify/index.js';
import { openStore } from './store/index.js';
import { TokenManager } from './oauth/token-manager.js';
import { createImapServer } from './proxy/imap/server.js';
import { createPop3Server } from './proxy/pop3/server.js';
import { probePop3Capabilities } from './proxy/pop3/upstream.js';
import type { CloseOptions, ProxyDeps, ProxyServer } from './proxy/shared/types.js';
import { frontLimits } from './proxy/shared/limits.js';
import { UpstreamCapabilities } from './proxy/shared/upstream-capabilities.js';
import { localExtensions } from './proxy/smtp/replies.js';
import { createGraphSending } from './proxy/smtp/graph-sending.js';
import { MessageBudget } from './proxy/shared/message-budget.js';
import { UpstreamPool } from './proxy/shared/upstream-pool.js';
import { DEFAULTS } from './config/defaults.js';
import { createSmtpServer } from './proxy/smtp/server.js';
import { probeSmtpExtensions } from './proxy/smtp/upstream.js';

export interface RunningListener {
  protocol: Protocol;
  host: string;
  port: number;
  tls: TlsMode;
}

export interface Daemon {
  listeners: RunningListener[];
  /** Base URL of the consent/admin web pages, when an HTTP listener runs. */
  httpUrl?: string;
  /**
   * Stops every listener at once and ends sessions not logged in; relayed sessions may go on for
   * `graceMs` (default 0); then the token manager saves what it holds and the store closes.
   */
  close(options?: CloseOptions): Promise<void>;
  /**
   * Puts a validated new config in force: new logins use it at once, relayed sessions are untouched,
   * and listeners that were added, removed or changed are started or retired (a retired listener
   * stops accepting and ends its sessions that have not logged in; relayed ones run on).
   */
  reload(next: Config): Promise<ReloadResult>;
}

export interface ReloadResult {
  /** `protocol host:port` of listeners started, retired, and those that could not bind. */
  started: string[];
  retired: string[];
  failed: Array<{ listener: string; error: string }>;
}

/** Where `xoauth-proxy reload` finds the running daemon: next to its token store (or key file). */
export function pidFilePath(config: Pick<Config, 'store'>): string {
  const beside = config.store.kind === 'postgres' ? config.store.keyFile : config.store.path;
  return join(dirname(beside), 'xoauth-proxy.pid');
}

/** A retired listener's relayed sessions may run this long; a mail session rarely lasts a day. */
const RETIRED_GRACE_MS = 24 * 3600_000;

export async function startDaemon(config: Config, logger: Logger): Promise<Daemon> {
  // The store first: a store that cannot be opened or decrypted must stop the start, not the first login.
  const store = await openStore(config.store, { logger: logger.child({ component: 'store' }) });
  const notifier = createConfiguredNotifier(config, store, logger.child({ component: 'notify' }));
  // One registry per daemon, and only when an HTTP listener serves it at /metrics.
  const metrics = config.listen.http.length > 0 && config.http.metrics !== false ? new Metrics() : undefined;
  const tokens = new TokenManager({
    config,
    store,
    logger: logger.child({ component: 'tokens' }),
    onEvent: notifyOnTokenEvent(notifier),
    ...(metrics ? { metrics } : {}),
    ...(config.store.kind === 'postgres' ? { refreshLeaseMs: config.store.refreshLeaseMs } : {}),
  });
  metrics?.trackAccounts(() => tokens.status());
  metrics?.trackCertificates(
    [...config.connections.values()].flatMap((c) =>
      c.clientCertificate ? [{ connection: c.name, notAfter: c.clientCertificate.notAfter }] : [],
    ),
  );
  // The upstreams' extension lists, for what the fronts advertise before login; learned in the
  // background, never awaited by a client.
  const capabilities = new UpstreamCapabilities({
    config,
    // Read at each session's start, so a reload's new size limit is offered at once.
    localSmtp: () => localExtensions(frontLimits(config.settings.limits).maxMessageSize),
    logger: logger.child({ component: 'capabilities' }),
    probes: {
      smtp: (connection, server, signal) =>
        probeSmtpExtensions(connection, server, {
          heloName: hostname(),
          timeoutMs: config.settings.limits.upstreamConnectTimeoutMs,
          signal,
        }),
      pop3: (connection, server, signal) =>
        probePop3Capabilities(connection, server, {
          timeoutMs: config.settings.limits.upstreamConnectTimeoutMs,
          signal,
        }),
    },
  });
  // Always there, so a reload that turns on `send: graph` needs no new listener; an account whose
  // connection has no Graph settings logs in by SMTP without it being asked.
  const graph = createGraphSending({
    store,
    tokens,
    maxMessageBytes: () => frontLimits(config.settings.limits).maxMessageSize,
    logger: logger.child({ component: 'graph' }),
    ...(metrics ? { metrics } : {}),
  });
  // Warm upstream connections, so a login pays only the AUTHENTICATE round trip.
  const upstreamPool = new UpstreamPool({
    settings: config.settings.upstreamPool ?? DEFAULTS.settings.upstreamPool,
    logger: logger.child({ component: 'upstream-pool' }),
  });
  // Fixed at start (a reload that changes limits.messageMemory applies after a restart).
  const messageBudget = new MessageBudget(config.settings.limits.messageMemory);
  const deps: ProxyDeps = {
    config,
    capabilities,
    messageBudget,
    graph,
    upstreamPool,
    authenticator: new LocalAuthenticator({ config, store, logger: logger.child({ component: 'auth' }) }),
    tokens,
    logger,
    consentHint: (account) => consentHintFor(config, account),
    ...(metrics ? { metrics } : {}),
  };

  type Entry = { protocol: Protocol; listener: ListenerConfig; server: ProxyServer };
  const createServer = (protocol: Protocol, listener: ListenerConfig): ProxyServer => {
    switch (protocol) {
      case 'imap':
        return createImapServer(listener, deps);
      case 'smtp':
        return createSmtpServer(listener, deps);
      case 'pop3':
        return createPop3Server(listener, deps);
      case 'http':
        return createHttpServer(listener, {
          config,
          store,
          tokens,
          logger: logger.child({ protocol: 'http' }),
          notifier,
          readiness: notReady,
          ...(metrics ? { metrics } : {}),
        });
    }
  };
  let planned: Entry[] = [];
  let stopping = false;
  let started: Entry[] = [];
  // What /readyz checks besides the store: a listener that did not bind is a proxy that cannot serve.
  const notReady = (): string | undefined => {
    if (stopping) return 'shutting down';
    const unbound = planned.find((entry) => !started.includes(entry));
    return unbound
      ? `${unbound.protocol} listener ${unbound.listener.host}:${unbound.listener.port} is not bound`
      : undefined;
  };
  for (const protocol of ['imap', 'smtp', 'pop3', 'http'] as const) {
    for (const listener of config.listen[protocol]) {
      planned.push({ protocol, listener, server: createServer(protocol, listener) });
    }
  }

  const listeners: RunningListener[] = [];
  const shutdown = async (options: CloseOptions = {}): Promise<void> => {
    stopping = true;
    capabilities.stop();
    // No new warm connections, and the idle ones go now: only logins in progress hold upstreams.
    upstreamPool.close();
    // Every listener stops accepting at the same moment; only the mail fronts have sessions worth waiting for.
    await Promise.allSettled(
      started.map((s) => (s.protocol === 'http' ? s.server.close() : s.server.close(options))),
    );
    // After the sessions: a refresh still in flight is awaited and a rotated refresh token saved first.
    await tokens.stop();
    await store.close();
    rmSync(pidFile, { force: true });
  };
  const pidFile = pidFilePath(config);
  try {
    for (const entry of planned) {
      const address = await entry.server.listen();
      started.push(entry);
      listeners.push({
        protocol: entry.protocol,
        host: address.host,
        port: address.port,
        tls: entry.listener.tls,
      });
    }
  } catch (err) {
    await shutdown();
    throw err;
  }
  tokens.start();
  capabilities.start();
  try {
    writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
  } catch (err) {
    logger.warn(
      { err: (err as Error).message, pidFile },
      'cannot write the pid file; `xoauth-proxy reload` will not find this process',
    );
  }

  const label = (e: Pick<Entry, 'protocol' | 'listener'>): string =>
    `${e.protocol} ${e.listener.host}:${e.listener.port}`;
  // Listener settings as data (certificate and key contents included, so a renewed certificate
  // counts as a change); the HTTP listener also depends on the http section.
  const fingerprint = (protocol: Protocol, listener: ListenerConfig, c: Config): string =>
    JSON.stringify(protocol === 'http' ? [listener, c.http] : [listener]);

  const reload = async (next: Config): Promise<ReloadResult> => {
    const result: ReloadResult = { started: [], retired: [], failed: [] };
    // A SIGHUP that arrives while shutting down must not start listeners the shutdown already passed.
    if (stopping) return result;
    const before = new Map(
      started.map((e) => [`${label(e)}`, { entry: e, print: fingerprint(e.protocol, e.listener, config) }]),
    );
    const wanted = new Map<string, { protocol: Protocol; listener: ListenerConfig; print: string }>();
    for (const protocol of ['imap', 'smtp', 'pop3', 'http'] as const) {
      for (const listener of next.listen[protocol]) {
        wanted.set(label({ protocol, listener }), {
          protocol,
          listener,
          print: fingerprint(protocol, listener, next),
        });
      }
    }
    // Everything that reads the config per login or request sees the new one from here on. The open
    // store and the notifier stay as they are: those need a restart, and the log says so.
    if (JSON.stringify(next.store) !== JSON.stringify(config.store)) {
      logger.warn({ store: next.store }, 'reload: store settings changed; they apply after a restart');
    }
    if (JSON.stringify(next.notify) !== JSON.stringify(config.notify)) {
      logger.warn('reload: notify settings changed; they apply after a restart');
    }
    Object.assign(config, { ...next, store: config.store, notify: config.notify });
    metrics?.trackCertificates(
      [...config.connections.values()].flatMap((c) =>
        c.clientCertificate ? [{ connection: c.name, notAfter: c.clientCertificate.notAfter }] : [],
      ),
    );
    // Accounts and connections may have changed: learn the lists anew (the old ones serve meanwhile).
    void capabilities.refresh();
    // New limits apply at once; warm connections to servers no longer configured expire unused.
    upstreamPool.configure(config.settings.upstreamPool ?? DEFAULTS.settings.upstreamPool);
    const keep: Entry[] = [];
    for (const [key, { entry, print }] of before) {
      const want = wanted.get(key);
      if (want && want.print === print) {
        keep.push(entry);
        wanted.delete(key);
        continue;
      }
      // Stops accepting now; its relayed sessions finish on their own.
      void entry.server.close(entry.protocol === 'http' ? {} : { graceMs: RETIRED_GRACE_MS });
      result.retired.push(key);
    }
    started = keep;
    planned = [...keep];
    for (const [key, want] of wanted) {
      const entry: Entry = {
        protocol: want.protocol,
        listener: want.listener,
        server: createServer(want.protocol, want.listener),
      };
      planned.push(entry);
      try {
        const address = await listenRetrying(entry.server);
        started.push(entry);
        result.started.push(`${want.protocol} ${address.host}:${address.port}`);
      } catch (err) {
        result.failed.push({ listener: key, error: (err as Error).message });
      }
    }
    listeners.splice(
      0,
      listeners.length,
      ...started.map((e) => ({
        protocol: e.protocol,
        host: e.listener.host,
        port: e.listener.port,
        tls: e.listener.tls,
      })),
    );
    return result;
  };

  const http = listeners.find((l) => l.protocol === 'http');
  let closing: Promise<void> | undefined;
  return {
    listeners,
    ...(http ? { httpUrl: publicBaseUrl(config, http.port) } : {}),
    close: (options) => (closing ??= shutdown(options)),
    reload,
  };
}

/**
 * A listener that replaces one on the same port binds as soon as the old one has let go of it; that
 * can take a moment after close(), so a busy port is retried briefly before it counts as a failure.
 */
async function listenRetrying(server: ProxyServer): Promise<{ host: string; port: number }> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await server.listen();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * The running proxy: opens the token store, starts the token manager and one server per configured
 * listener, and closes them all on shutdown. Wiring only; every piece lives in its own module.
 */
import type { Logger } from 'pino';
import type { Config, ListenerConfig, Protocol, TlsMode } from './config/types.js';
import { LocalAuthenticator } from './credentials/authenticator.js';
import { consentHintFor } from './http/consent-hint.js';
import { publicBaseUrl } from './http/public-url.js';
import { createHttpServer } from './http/server.js';
import { Metrics } from './metrics/metrics.js';
import { createConfiguredNotifier, notifyOnTokenEvent } from './notify/index.js';
import { openTokenStore } from './oauth/store/index.js';
import { TokenManager } from './oauth/token-manager.js';
import { createImapServer } from './proxy/imap/server.js';
import { createPop3Server } from './proxy/pop3/server.js';
import type { CloseOptions, ProxyDeps, ProxyServer } from './proxy/shared/types.js';
import { createSmtpServer } from './proxy/smtp/server.js';

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
}

export async function startDaemon(config: Config, logger: Logger): Promise<Daemon> {
  // The store first: a store that cannot be opened or decrypted must stop the start, not the first login.
  const store = openTokenStore(config.store, { logger: logger.child({ component: 'store' }) });
  const notifier = createConfiguredNotifier(config, store, logger.child({ component: 'notify' }));
  // One registry per daemon, and only when an HTTP listener serves it at /metrics.
  const metrics = config.listen.http.length > 0 && config.http.metrics !== false ? new Metrics() : undefined;
  const tokens = new TokenManager({
    config,
    store,
    logger: logger.child({ component: 'tokens' }),
    onEvent: notifyOnTokenEvent(notifier),
    ...(metrics ? { metrics } : {}),
  });
  metrics?.trackAccounts(() => tokens.status());
  metrics?.trackCertificates(
    [...config.connections.values()].flatMap((c) =>
      c.clientCertificate ? [{ connection: c.name, notAfter: c.clientCertificate.notAfter }] : [],
    ),
  );
  const deps: ProxyDeps = {
    config,
    authenticator: new LocalAuthenticator({ config, store, logger: logger.child({ component: 'auth' }) }),
    tokens,
    logger,
    consentHint: (account) => consentHintFor(config, account),
    ...(metrics ? { metrics } : {}),
  };

  const planned: Array<{ protocol: Protocol; listener: ListenerConfig; server: ProxyServer }> = [];
  for (const listener of config.listen.imap) {
    planned.push({ protocol: 'imap', listener, server: createImapServer(listener, deps) });
  }
  for (const listener of config.listen.smtp) {
    planned.push({ protocol: 'smtp', listener, server: createSmtpServer(listener, deps) });
  }
  for (const listener of config.listen.pop3) {
    planned.push({ protocol: 'pop3', listener, server: createPop3Server(listener, deps) });
  }
  let stopping = false;
  const started: Array<{ protocol: Protocol; listener: ListenerConfig; server: ProxyServer }> = [];
  // What /readyz checks besides the store: a listener that did not bind is a proxy that cannot serve.
  const notReady = (): string | undefined => {
    if (stopping) return 'shutting down';
    const unbound = planned.find((entry) => !started.includes(entry));
    return unbound
      ? `${unbound.protocol} listener ${unbound.listener.host}:${unbound.listener.port} is not bound`
      : undefined;
  };
  for (const listener of config.listen.http) {
    const server = createHttpServer(listener, {
      config,
      store,
      tokens,
      logger: logger.child({ protocol: 'http' }),
      notifier,
      readiness: notReady,
      ...(metrics ? { metrics } : {}),
    });
    planned.push({ protocol: 'http', listener, server });
  }

  const listeners: RunningListener[] = [];
  const shutdown = async (options: CloseOptions = {}): Promise<void> => {
    stopping = true;
    // Every listener stops accepting at the same moment; only the mail fronts have sessions worth waiting for.
    await Promise.allSettled(
      started.map((s) => (s.protocol === 'http' ? s.server.close() : s.server.close(options))),
    );
    // After the sessions: a refresh still in flight is awaited and a rotated refresh token saved first.
    await tokens.stop();
    store.close();
  };
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

  const http = listeners.find((l) => l.protocol === 'http');
  let closing: Promise<void> | undefined;
  return {
    listeners,
    ...(http ? { httpUrl: publicBaseUrl(config, http.port) } : {}),
    close: (options) => (closing ??= shutdown(options)),
  };
}

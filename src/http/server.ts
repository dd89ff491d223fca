/**
 * The HTTP listener: consent pages, the OAuth callback, (with an admin password) /admin, the probes
 * /healthz and /readyz and, unless `http.metrics` is false, the Prometheus /metrics.
 * Server-rendered HTML, no scripts, one stylesheet; every response carries the security headers.
 */
import {
  createServer as createHttpServerRaw,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { resolveAccount } from '../config/accounts.js';
import type { Config, ListenerConfig, ResolvedAccount } from '../config/types.js';
import { ProxyError } from '../errors.js';
import type { Notifier } from '../notify/notifier.js';
import {
  createConsentLink,
  DEFAULT_CONSENT_LINK_TTL_MS,
  type CreatedConsentLink,
} from '../oauth/consent-links.js';
import type { TokenProvider, Store } from '../oauth/types.js';
import type { ProxyServer } from '../proxy/shared/types.js';
import { AdminRoutes } from './admin-routes.js';
import { ConsentFlow } from './consent-flow.js';
import type { ConsentGrants } from './consent-grants.js';
import { createOAuthGrants, type ConsentRecorder } from './oauth-consent-grants.js';
import { pages } from './pages/messages.js';
import { CALLBACK_PATH, publicBaseUrl } from '../config/public-url.js';
import { BodyTooLarge, sendMessage } from './respond.js';
import { CsrfTokens, securityHeaders } from './security.js';
import { STYLE_CSS } from './style.js';

export interface HttpServerDeps {
  config: Config;
  store: Store;
  /**
   * The token manager. With `recordConsent` (TokenManager) a web consent goes through it, so it
   * forgets old failures and reports `consented` to its onEvent (wire the notifier there); with a
   * plain TokenProvider the grant is stored directly and the cached token invalidated.
   */
  tokens: TokenProvider & { recordConsent?: ConsentRecorder };
  logger: Logger;
  notifier?: Notifier;
  /** The OAuth core's grant functions (default: src/oauth; tests may pass a double). */
  grants?: ConsentGrants;
  /** username -> account, for exact and `*@domain` entries (default: the config's resolveAccount). */
  resolveAccount?: (username: string) => ResolvedAccount | undefined;
  /** Injected clock for tests (link expiry, pending consents). */
  now?: () => number;
  /** Served at GET /metrics unless `http.metrics` is false (src/metrics/metrics.ts). */
  metrics?: MetricsSource;
  /**
   * What /readyz asks besides the store: a short reason why the process cannot serve yet (a listener
   * not bound, a shutdown under way), or undefined when it can. The daemon passes its own.
   */
  readiness?: () => string | undefined;
}

/** What GET /metrics serves: Prometheus text from the daemon's Metrics object. */
export interface MetricsSource {
  readonly contentType: string;
  scrape(): Promise<string>;
}

export interface HttpServer extends ProxyServer {
  /** The public base URL (valid after listen() when it derives from the bound port). */
  readonly baseUrl: string;
  /** A one-off consent link for the account (the CLI and the notifier use the same function). */
  createConsentLink(account: ResolvedAccount, options?: { expiresMs?: number }): Promise<CreatedConsentLink>;
}

const TOKEN_SEGMENT = '([A-Za-z0-9_-]{1,128})';
const CONSENT_ROUTE = new RegExp(`^/consent/${TOKEN_SEGMENT}(?:/(start|device))?/?$`);
const DEVICE_ROUTE = new RegExp(`^/consent/device/${TOKEN_SEGMENT}/?$`);

export function createHttpServer(listener: ListenerConfig, deps: HttpServerDeps): HttpServer {
  const now = deps.now ?? Date.now;
  const resolve = deps.resolveAccount ?? ((username: string) => resolveAccount(deps.config, username));
  const csrf = new CsrfTokens(deps.store.deriveKey('csrf'));
  const metrics = deps.config.http.metrics === false ? undefined : deps.metrics;
  let boundPort: number | undefined;
  const baseUrl = (): string => publicBaseUrl(deps.config, boundPort ?? listener.port);
  const consent = new ConsentFlow({
    config: deps.config,
    store: deps.store,
    tokens: deps.tokens,
    tokensRecordConsent: Boolean(deps.tokens.recordConsent && !deps.grants),
    logger: deps.logger,
    ...(deps.notifier ? { notifier: deps.notifier } : {}),
    grants:
      deps.grants ??
      createOAuthGrants({
        store: deps.store,
        settings: deps.config.settings,
        now,
        ...(deps.tokens.recordConsent ? { recordConsent: deps.tokens.recordConsent.bind(deps.tokens) } : {}),
      }),
    resolveAccount: resolve,
    now,
    csrf,
    baseUrl,
  });
  const adminSecret = deps.config.http.adminPassword;
  const admin = adminSecret
    ? new AdminRoutes(
        {
          config: deps.config,
          store: deps.store,
          logger: deps.logger,
          resolveAccount: resolve,
          now,
          csrf,
          baseUrl,
          https: listener.tls === 'implicit',
        },
        adminSecret,
      )
    : undefined;

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const isGet = method === 'GET' || method === 'HEAD';

    if (path === '/assets/style.css' && isGet) {
      res.writeHead(200, {
        ...securityHeaders(),
        'Content-Type': 'text/css; charset=utf-8',
        'Cache-Control': 'public, max-age=3600',
      });
      res.end(STYLE_CSS);
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      if (!isGet) return sendMessage(res, pages.methodNotAllowed());
      // No authentication and no account data: a load balancer or `docker` asks, not a person.
      const reason =
        path === '/healthz'
          ? undefined
          : (deps.readiness?.() ?? (await storeUnreadable(deps.store, deps.logger)));
      return sendPlain(res, reason === undefined ? 200 : 503, reason ?? 'ok', method === 'HEAD');
    }
    if (path === '/metrics' && metrics) {
      if (!isGet) return sendMessage(res, pages.methodNotAllowed());
      // No authentication: the scrape holds counts by protocol and state only, never an account.
      const body = await metrics.scrape();
      res.writeHead(200, {
        ...securityHeaders(),
        'Content-Type': metrics.contentType,
        'Content-Length': String(Buffer.byteLength(body)),
      });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === CALLBACK_PATH) {
      if (!isGet) return sendMessage(res, pages.methodNotAllowed());
      return consent.callback(req, res, url.searchParams);
    }
    const device = DEVICE_ROUTE.exec(path);
    if (device) {
      if (!isGet) return sendMessage(res, pages.methodNotAllowed());
      return consent.showDevice(req, res, device[1] as string);
    }
    const link = CONSENT_ROUTE.exec(path);
    if (link) {
      const token = link[1] as string;
      const action = link[2];
      if (action === undefined) {
        if (!isGet) return sendMessage(res, pages.methodNotAllowed());
        return consent.show(req, res, token);
      }
      if (method !== 'POST') return sendMessage(res, pages.methodNotAllowed());
      return action === 'start' ? consent.start(req, res, token) : consent.startDevice(req, res, token);
    }
    if (path.startsWith('/consent/')) return sendMessage(res, pages.badLink());
    if (path === '/admin' || path.startsWith('/admin/')) {
      // Without an admin password there is no admin page at all, not even a login prompt.
      if (!admin) return sendMessage(res, pages.notFound());
      return admin.handle(req, res, path);
    }
    sendMessage(res, pages.notFound());
  }

  // Over https, browsers are told to keep using https for this host: a later plain-http link (a typo,
  // an old bookmark) must not send the consent cookie or an app password page in clear.
  const hsts = listener.tls === 'implicit';
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (hsts) res.setHeader('Strict-Transport-Security', 'max-age=31536000');
    route(req, res).catch((err: unknown) => {
      if (err instanceof BodyTooLarge) {
        if (!res.headersSent)
          sendMessage(res, { ...pages.formExpired(), status: 413 }, { Connection: 'close' });
        return;
      }
      deps.logger.error(
        { err: err instanceof Error ? err.message : String(err), path: loggablePath(req.url) },
        'http request failed',
      );
      if (!res.headersSent) sendMessage(res, pages.serverError());
      else res.destroy();
    });
  };

  let server: Server;
  if (listener.tls === 'implicit') {
    if (!listener.cert || !listener.key)
      throw new ProxyError('config', 'the https listener needs cert and key');
    server = createHttpsServer(
      {
        cert: listener.cert,
        key: listener.key,
        ...(listener.minVersion ? { minVersion: listener.minVersion } : {}),
      },
      handler,
    );
  } else if (listener.tls === 'none') {
    server = createHttpServerRaw(handler);
  } else {
    throw new ProxyError('config', 'the http listener supports tls: none or implicit (https), not starttls');
  }
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;
  server.keepAliveTimeout = 5_000;

  return {
    get baseUrl() {
      return baseUrl();
    },
    createConsentLink(account, options = {}) {
      return createConsentLink(deps.store, account, {
        baseUrl: baseUrl(),
        expiresMs: options.expiresMs ?? DEFAULT_CONSENT_LINK_TTL_MS,
        now: now(),
      });
    },
    listen() {
      return new Promise((resolve, reject) => {
        const onError = (err: Error): void => reject(err);
        server.once('error', onError);
        server.listen(listener.port, listener.host, () => {
          server.off('error', onError);
          const address = server.address() as AddressInfo;
          boundPort = address.port;
          deps.logger.info({ host: address.address, port: address.port, url: baseUrl() }, 'http listening');
          resolve({ host: address.address, port: address.port });
        });
      });
    },
    close() {
      consent.close();
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** A readiness probe's answer: one line of text that is never cached. */
function sendPlain(res: ServerResponse, status: number, text: string, headOnly: boolean): void {
  const body = `${text}\n`;
  res.writeHead(status, {
    ...securityHeaders(),
    'Content-Type': 'text/plain; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': String(Buffer.byteLength(body)),
  });
  res.end(headOnly ? undefined : body);
}

/** A store that has not answered /readyz's query by then counts as unreachable. */
const READY_STORE_TIMEOUT_MS = 2_000;

/**
 * Whether the token store answers a trivial query (nothing about an account is read). The error's
 * details go to the log only: the reason is for an unauthenticated caller.
 */
async function storeUnreadable(store: Pick<Store, 'ping'>, logger: Logger): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      store.ping(),
      new Promise((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within 2 s')), READY_STORE_TIMEOUT_MS);
      }),
    ]);
    return undefined;
  } catch (err) {
    logger.warn(
      { err: err instanceof Error ? err.message : String(err) },
      'readyz: the token store cannot be read',
    );
    return 'token store cannot be read';
  } finally {
    clearTimeout(timer);
  }
}

/** The path without query and without the secret parts (consent-link token, device session id). */
export function loggablePath(url: string | undefined): string {
  const path = (url ?? '/').split('?')[0] ?? '/';
  return path.replace(/^\/consent\/(device\/)?[^/]+/, (_m, device: string | undefined) =>
    device ? '/consent/device/[redacted]' : '/consent/[redacted]',
  );
}

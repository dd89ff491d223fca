/**
 * One running consent/admin HTTP server against the fake authorization server, with a real token
 * store in a temp dir, plus a tiny cookie-keeping client that follows redirects step by step.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/types.js';
import { createHttpServer, type HttpServer, type HttpServerDeps } from '../../../src/http/server.js';
import { silentLogger } from '../../../src/log.js';
import { openStore } from '../../../src/store/index.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import type { TokenEvent, TokenProvider, Store } from '../../../src/oauth/types.js';
import {
  startFakeAuthServer,
  type FakeAuthOptions,
  type FakeAuthServer,
} from '../../helpers/fake-auth-server.js';

export interface Harness {
  /** Another handle on the same store, as a second instance (or process) would have. */
  openStore(): Promise<Store>;
  fake: FakeAuthServer;
  config: Config;
  store: Store;
  server: HttpServer;
  /** http://localhost:PORT, what links and redirect URIs use. */
  base: string;
  invalidated: string[];
  /** Events of the real TokenManager (with `tokenManager: true`). */
  events: TokenEvent[];
  tokens: TokenProvider;
  clock: { now: number };
  close(): Promise<void>;
}

export interface HarnessOptions {
  fake?: FakeAuthOptions;
  /** Extra YAML under `http:` (indented two spaces). */
  http?: string;
  /** Extra YAML account entries (each starting with "  - "). */
  accounts?: string;
  /** Extra YAML connection entries (each starting with "  - "). */
  connections?: string;
  extra?: string;
  deps?: Partial<HttpServerDeps>;
  /** Use the real clock instead of the injected one. */
  realClock?: boolean;
  /** The real TokenManager instead of a TokenProvider stub that only records invalidations. */
  tokenManager?: boolean;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const fake = await startFakeAuthServer(options.fake);
  const dir = mkdtempSync(join(tmpdir(), 'xoauth-http-'));
  const yaml = `
listen:
  imap:
    - port: 1143
  smtp:
    - port: 1587
      tls: none
  http:
    - port: 8080
store:
  path: ${join(dir, 'tokens.db')}
  keyFile: ${join(dir, 'key')}
connections:
  - name: fake
    provider: custom
    clientId: test-client
    clientSecret: test-secret-0123456789
    authorizeUrl: ${fake.authorizeUrl}
    tokenUrl: ${fake.tokenUrl}
    userinfoUrl: ${fake.userinfoUrl}
    scopes: ['https://mail.google.com/', 'openid', 'email', 'profile']
    imap: { host: 127.0.0.1, port: 993, tls: implicit }
  - name: ms
    provider: microsoft
    clientId: ms-client
    tenantId: 11111111-2222-3333-4444-555555555555
    authorizeUrl: ${fake.authorizeUrl}
    tokenUrl: ${fake.tokenUrl}
    deviceCodeUrl: ${fake.deviceCodeUrl}
  - name: app
    provider: microsoft
    clientId: app-client
    clientSecret: app-secret
    tenantId: 11111111-2222-3333-4444-555555555555
    grant: client_credentials
    tokenUrl: ${fake.tokenUrl}
${options.connections ?? ''}
accounts:
  - username: robot@contoso.com
    connection: app
  - username: alice@example.com
    connection: fake
  - username: '*@example.org'
    connection: fake
  - username: carol@contoso.com
    connection: ms
${options.accounts ?? ''}
${options.http ? `http:\n${options.http}` : ''}
${options.extra ?? ''}
`;
  const config = parseConfig(yaml, { file: join(dir, 'config.yaml'), env: {} });
  const storeEnv = { XOAUTH_PROXY_KEY: randomBytes(32).toString('base64') };
  const store = await openStore(config.store, { env: storeEnv });
  const clock = { now: Date.now() };
  const invalidated: string[] = [];
  const listener = config.listen.http[0];
  if (!listener) throw new Error('no http listener in the test config');
  // The config needs a real port number; the test server takes any free one.
  const events: TokenEvent[] = [];
  const tokens: TokenProvider = options.tokenManager
    ? new TokenManager({ config, store, logger: silentLogger(), onEvent: (e) => void events.push(e) })
    : {
        getAccessToken: () => Promise.reject(new Error('not used by the pages')),
        invalidate: (id) => void invalidated.push(id),
      };
  const server = createHttpServer(
    { ...listener, port: 0 },
    {
      config,
      store,
      tokens,
      logger: silentLogger(),
      ...(options.realClock ? {} : { now: () => clock.now }),
      ...options.deps,
    },
  );
  await server.listen();
  return {
    fake,
    config,
    store,
    server,
    base: server.baseUrl,
    invalidated,
    events,
    tokens,
    clock,
    openStore: () => openStore(config.store, { env: storeEnv }),
    async close() {
      await server.close();
      await store.close();
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A browser in miniature: one cookie jar, manual redirects, form posts. */
export class TestBrowser {
  readonly cookies = new Map<string, string>();
  private readonly extraHeaders: Record<string, string>;

  constructor(headers: Record<string, string> = {}) {
    this.extraHeaders = headers;
  }

  async request(
    url: string,
    init: { method?: string; form?: Record<string, string> } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...this.extraHeaders };
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (init.form) {
      body = new URLSearchParams(init.form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const res = await fetch(url, {
      method: init.method ?? (init.form ? 'POST' : 'GET'),
      headers,
      body,
      redirect: 'manual',
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair?.indexOf('=') ?? -1;
      if (pair && eq > 0) this.cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    return res;
  }

  get(url: string): Promise<Response> {
    return this.request(url);
  }

  post(url: string, form: Record<string, string>): Promise<Response> {
    return this.request(url, { form });
  }
}

export function location(res: Response, base?: string): string {
  const loc = res.headers.get('location');
  if (!loc) throw new Error(`expected a redirect, got ${res.status}`);
  return base ? new URL(loc, base).toString() : loc;
}

/** The value of a hidden input in a page. */
export function formField(page: string, name: string): string {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(page);
  if (!m) throw new Error(`no field ${name} in the page`);
  return m[1] as string;
}

export function formAction(page: string, index = 0): string {
  const all = [...page.matchAll(/<form method="post" action="([^"]+)"/g)];
  const m = all[index];
  if (!m) throw new Error('no form in the page');
  return m[1] as string;
}

/** Visible text of a page (tags stripped, entities for quotes decoded), for assertions. */
export function text(page: string): string {
  return page
    .replace(/<[^>]+>/g, ' ')
    .replace(/&#39;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ');
}

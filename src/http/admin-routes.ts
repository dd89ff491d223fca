/**
 * /admin: status of every connection and account, and the buttons that start consent. Only exists when
 * http.adminPassword is set. Every POST carries a CSRF token bound to the admin's browser.
 */
import { createHash } from 'node:crypto';
import { grantHasNoConsent } from '../config/accounts.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config, ResolvedAccount } from '../config/types.js';
import {
  ADMIN_CONSENT_LINK_TTL_MS,
  DEFAULT_CONSENT_LINK_TTL_MS,
  createConsentLink,
} from '../oauth/consent-links.js';
import { displayState, sendingStatus, tokenSummaries } from '../oauth/account-status.js';
import type { Store, TokenSummary } from '../oauth/types.js';
import { formatTime } from './pages/format.js';
import { ADMIN_ATTEMPT_WINDOW_MS, AdminAuth } from './admin-auth.js';
import { html } from './html.js';
import { adminPage, consentLinkCreatedPage, type AdminAccountRow } from './pages/admin-page.js';
import { messagePage } from './pages/messages.js';
import { redirect, readForm, sendHtml, sendMessage } from './respond.js';
import {
  appendSetCookie,
  browserId,
  securityHeaders,
  setBrowserCookie,
  type CsrfTokens,
} from './security.js';
import { pages } from './pages/messages.js';

export interface AdminDeps {
  config: Config;
  store: Store;
  logger: Logger;
  resolveAccount: (username: string) => ResolvedAccount | undefined;
  now: () => number;
  csrf: CsrfTokens;
  baseUrl: () => string;
  /** The listener speaks https: cookies get Secure (also when publicUrl is https). */
  https?: boolean;
}

const CSRF_PURPOSE = 'admin';

export class AdminRoutes {
  private readonly auth: AdminAuth;

  constructor(
    private readonly deps: AdminDeps,
    secret: string,
  ) {
    this.auth = new AdminAuth(secret, deps.now, {
      ...(deps.config.http?.trustedProxies ? { trustedProxies: deps.config.http.trustedProxies } : {}),
      // Bound to the password too: changing it ends every session.
      sessionKey: deps.store.deriveKey(`admin-session:${createHash('sha256').update(secret).digest('hex')}`),
    });
  }

  private secureCookies(): boolean {
    return Boolean(this.deps.https) || this.deps.baseUrl().startsWith('https:');
  }

  /** True when the request may go on; otherwise the response is already sent. */
  private async authorize(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const result = await this.auth.check(req);
    if (result === 'session') return true;
    if (result === 'ok') {
      appendSetCookie(res, this.auth.sessionCookie(this.secureCookies()));
      return true;
    }
    if (result === 'wrong')
      this.deps.logger.warn({ client: this.auth.clientAddress(req) }, 'admin login failed');
    if (result === 'busy') this.deps.logger.warn('admin login refused: too many attempts from all addresses');
    const refused = result === 'locked' || result === 'busy';
    const body = messagePage({
      status: refused ? 429 : 401,
      title: refused ? 'Too many sign-in attempts' : 'Sign in to the administration page',
      tone: 'bad',
      what:
        result === 'locked'
          ? 'There were too many wrong passwords from your address.'
          : result === 'busy'
            ? 'The administration page had too many sign-in attempts in the last minute.'
            : 'This page needs the admin password (any user name).',
      todo:
        result === 'locked'
          ? 'Wait ten minutes, then try again.'
          : result === 'busy'
            ? 'Wait a minute, then try again.'
            : 'Reload the page and enter the admin password.',
    }).toString();
    res.writeHead(refused ? 429 : 401, {
      ...securityHeaders(),
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(body)),
      ...(result === 'busy' ? { 'Retry-After': String(ADMIN_ATTEMPT_WINDOW_MS / 1000) } : {}),
      ...(refused ? {} : { 'WWW-Authenticate': 'Basic realm="xoauth-proxy admin", charset="UTF-8"' }),
    });
    res.end(body);
    return false;
  }

  async handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (!(await this.authorize(req, res))) return;
    if (path === '/admin' || path === '/admin/') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return sendMessage(res, pages.methodNotAllowed());
      return this.showStatus(req, res);
    }
    if (path === '/admin/consent-link' || path === '/admin/refresh') {
      if (req.method !== 'POST') return sendMessage(res, pages.methodNotAllowed());
      return this.createLink(req, res, path === '/admin/refresh');
    }
    sendMessage(res, pages.notFound());
  }

  private async showStatus(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const accounts = await this.rows();
    const browser = browserId(req);
    if (browser.isNew) setBrowserCookie(res, browser.id, this.secureCookies());
    sendHtml(
      res,
      200,
      adminPage({
        connections: [...this.deps.config.connections.values()],
        accounts,
        csrf: this.deps.csrf.issue(browser.id, CSRF_PURPOSE),
        now: this.deps.now(),
      }),
    );
  }

  private async rows(): Promise<AdminAccountRow[]> {
    const { config, store } = this.deps;
    // Summaries (no secret) that mark a row which cannot be decrypted, so one damaged row shows as
    // `unreadable` for its account and every other account renders.
    const [tokens, passwords] = await Promise.all([tokenSummaries(store), store.listAppPasswords()]);
    const seen = new Set<string>();
    const rows: AdminAccountRow[] = [];
    const rowFor = (account: ResolvedAccount, label: string): AdminAccountRow => {
      seen.add(account.id);
      const t = tokens.find((r) => r.accountId === account.id);
      return {
        username: account.username,
        label,
        mailbox: account.email,
        connection: account.connection.name,
        ...(t
          ? {
              state: displayState(t),
              ...(t.accessTokenExpiresAt !== undefined ? { expiresAt: t.accessTokenExpiresAt } : {}),
              ...(t.lastRefreshAt !== undefined ? { lastRefreshAt: t.lastRefreshAt } : {}),
              ...(t.unreadable !== undefined
                ? { lastError: `${t.unreadable}: create a consent link to replace it` }
                : t.lastError !== undefined
                  ? { lastError: t.lastError }
                  : {}),
            }
          : {}),
        ...sendingLine(account, t, this.deps.now()),
        appPasswords: passwords.filter((p) => p.accountId === account.id),
        hasAdminPassword: Boolean(account.passwordHash),
        ...(grantHasNoConsent(account.connection)
          ? { noConsent: account.connection.grant === 'service_account' ? 'service account' : 'app-only' }
          : {}),
      };
    };
    for (const entry of config.accounts) {
      if (entry.username.includes('*')) {
        rows.push({
          label: entry.username,
          connection: entry.connection,
          appPasswords: [],
          hasAdminPassword: Boolean(entry.password),
        });
        // Addresses under this pattern that have consented already.
        for (const t of tokens) {
          if (seen.has(t.accountId)) continue;
          const account = this.deps.resolveAccount(t.accountId);
          if (account && account.entry === entry.username) rows.push(rowFor(account, account.username));
        }
        continue;
      }
      const account = this.deps.resolveAccount(entry.username);
      if (account && !seen.has(account.id)) rows.push(rowFor(account, account.username));
    }
    return rows;
  }

  private async createLink(req: IncomingMessage, res: ServerResponse, refresh: boolean): Promise<void> {
    const form = await readForm(req);
    const browser = browserId(req);
    if (browser.isNew || !this.deps.csrf.verify(browser.id, CSRF_PURPOSE, form.get('csrf') ?? undefined)) {
      return sendMessage(res, pages.formExpired());
    }
    const username = (form.get('username') ?? '').trim();
    const account = username ? this.deps.resolveAccount(username) : undefined;
    if (!account) {
      return sendMessage(res, {
        status: 400,
        title: 'No such account',
        tone: 'bad',
        what: html`“${username}” does not match any account in the configuration.`,
        todo: 'Go back and check the address.',
      });
    }
    if (grantHasNoConsent(account.connection)) {
      return sendMessage(res, {
        status: 400,
        title: 'No consent needed',
        tone: 'warn',
        what:
          account.connection.grant === 'service_account'
            ? html`${account.username} uses a Google service account (domain-wide delegation): nobody signs in
              for it.`
            : html`${account.username} uses an app-only connection (client credentials): nobody signs in for
              it.`,
        todo: 'Check the app permissions and admin consent in the provider’s portal instead.',
      });
    }
    const created = await createConsentLink(this.deps.store, account, {
      baseUrl: this.deps.baseUrl(),
      expiresMs: refresh ? ADMIN_CONSENT_LINK_TTL_MS : DEFAULT_CONSENT_LINK_TTL_MS,
      now: this.deps.now(),
    });
    this.deps.logger.info({ account: account.id, refresh }, 'consent link created on the admin page');
    if (refresh) {
      // Relative, so it works however the admin reached this server (publicUrl may name another host).
      return redirect(res, new URL(created.url).pathname);
    }
    sendHtml(
      res,
      200,
      consentLinkCreatedPage({ username: account.username, url: created.url, expiresAt: created.expiresAt }),
    );
  }
}

/** The admin row's note on Graph sending: which way the account sends, and a missing Graph consent. */
function sendingLine(
  account: ResolvedAccount,
  summary: TokenSummary | undefined,
  now: number,
): { sending?: string } {
  const status = sendingStatus(account.connection, summary, now);
  if (!status) return {};
  const via =
    status.via === 'smtp'
      ? 'sends by SMTP (Graph if SMTP AUTH is off)'
      : status.mode === 'auto'
        ? `sends through Graph (SMTP AUTH off) until ${formatTime(status.graphUntil)}`
        : 'sends through Graph';
  return { sending: status.graphConsent === false ? `${via}; consent again to allow Graph` : via };
}

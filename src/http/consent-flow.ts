/**
 * The consent pages: link page -> provider -> callback -> welcome page (or the device-code variant).
 * Everything secret stays server-side: the PKCE verifier lives in a pending record keyed by `state`,
 * bound to the browser's cookie; the link is spent only once the tokens are stored.
 */
import { grantHasNoConsent } from '../config/accounts.js';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config, ResolvedAccount } from '../config/types.js';
import type { Notifier } from '../notify/notifier.js';
import { createAppPassword, webConsentLabel } from '../credentials/app-passwords.js';
import { checkConsentLink, spendConsentLink } from '../oauth/consent-links.js';
import type { ConsentLinkRecord, TokenProvider, Store } from '../oauth/types.js';
import { deviceFlowAvailable, type ConsentGrants, type PendingGrant } from './consent-grants.js';
import type { MessagePage } from './pages/messages.js';
import { pages } from './pages/messages.js';
import { consentPage, devicePage, welcomePage } from './pages/consent-pages.js';
import { providerName } from './pages/format.js';
import { ExpiringMap, MAX_PENDING_CONSENTS, PENDING_CONSENT_TTL_MS } from './pending-consents.js';
import { redirect, readForm, sendHtml, sendMessage } from './respond.js';
import { browserId, setBrowserCookie, type CsrfTokens } from './security.js';
import { redirectUri } from '../config/public-url.js';

export interface ConsentFlowDeps {
  config: Config;
  store: Store;
  tokens: TokenProvider;
  logger: Logger;
  notifier?: Notifier;
  /** True when `tokens` stores consents itself (TokenManager.recordConsent) and reports them. */
  tokensRecordConsent: boolean;
  grants: ConsentGrants;
  resolveAccount: (username: string) => ResolvedAccount | undefined;
  now: () => number;
  csrf: CsrfTokens;
  baseUrl: () => string;
}

type DeviceSession = {
  browser: string;
  linkHash: string;
  username: string;
  userCode: string;
  verificationUri: string;
  codeExpiresAt: number;
  expiresAt: number;
  cancel: () => void;
} & (
  | { status: 'pending' }
  | { status: 'approved'; grant: PendingGrant }
  | { status: 'mismatch'; identity: string }
  | { status: 'failed'; reason: string }
  /** Approved at the provider, but the link was used or expired by then: this page, nothing stored. */
  | { status: 'refused'; page: MessagePage }
  | { status: 'done' }
);

/** Consents in progress one link may hold (see makeRoomForLink). */
export const MAX_PENDING_PER_LINK = 3;

/** Device sessions kept at most; each one may hold a poller at the provider. */
const MAX_DEVICE_SESSIONS = 200;

/** OAuth error codes are [\x20-\x7e] per RFC 6749; keep them short and plain for the page. */
function safeCode(text: string): string {
  return text.replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 64) || 'unknown_error';
}

function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/[\r\n]+/g, ' ').slice(0, 200);
}

export class ConsentFlow {
  private readonly devices: ExpiringMap<DeviceSession>;
  /** Link hash -> id of its device session: one link has at most one poller at the provider. */
  private readonly deviceByLink = new Map<string, string>();
  /** Ids of sessions replaced by a newer code, so their page can say so. */
  private readonly replacedDevices: ExpiringMap<{ browser: string; expiresAt: number }>;

  constructor(private readonly deps: ConsentFlowDeps) {
    // A session pushed out by the cap or expired must stop polling the provider, or it would go on
    // until the code expires (~15 min) with nobody left to see the result.
    this.devices = new ExpiringMap(deps.now, MAX_DEVICE_SESSIONS, (id, session) => this.retire(id, session));
    this.replacedDevices = new ExpiringMap(deps.now, MAX_DEVICE_SESSIONS);
  }

  /** Stops a device session's poller and forgets it as its link's session. */
  private retire(id: string, session: DeviceSession): void {
    session.cancel();
    if (this.deviceByLink.get(session.linkHash) === id) this.deviceByLink.delete(session.linkHash);
  }

  private secureCookies(): boolean {
    return this.deps.baseUrl().startsWith('https:');
  }

  /** The link's record and account, or the page that explains why there is none. */
  private async openLink(
    token: string,
  ): Promise<{ record: ConsentLinkRecord; account: ResolvedAccount } | { page: MessagePage }> {
    const link = await checkConsentLink(this.deps.store, token, this.deps.now());
    switch (link.status) {
      case 'malformed':
      case 'unknown':
        return { page: pages.badLink() };
      case 'used':
        return { page: pages.usedLink(link.record.usedAt) };
      case 'expired':
        return { page: pages.expiredLink(link.record.expiresAt) };
    }
    const account = this.deps.resolveAccount(link.record.username);
    if (!account || account.id !== link.record.accountId) {
      return { page: pages.accountGone(link.record.username) };
    }
    // A link for an account that moved to an app-only connection has nothing left to consent to.
    if (grantHasNoConsent(account.connection)) {
      return { page: pages.noConsentNeeded(account.username) };
    }
    return { record: link.record, account };
  }

  /** Stops polling the provider for device codes still waiting (server shutdown). */
  close(): void {
    for (const session of this.devices.values()) if (session.status === 'pending') session.cancel();
  }

  /** GET /consent/<token> */
  async show(req: IncomingMessage, res: ServerResponse, token: string): Promise<void> {
    const opened = await this.openLink(token);
    if ('page' in opened) return sendMessage(res, opened.page);
    const { record, account } = opened;
    const browser = browserId(req);
    if (browser.isNew) setBrowserCookie(res, browser.id, this.secureCookies());
    const provider = providerName(account.connection);
    const base = `/consent/${token}`;
    sendHtml(
      res,
      200,
      consentPage({
        mailbox: account.email,
        provider,
        expiresAt: record.expiresAt,
        startAction: `${base}/start`,
        ...(deviceFlowAvailable(account) && this.deps.grants.startDevice
          ? { deviceAction: `${base}/device` }
          : {}),
        csrf: this.deps.csrf.issue(browser.id, `consent:${record.tokenHash}`),
      }),
      // Chromium checks form-action against the redirect that follows the POST, too.
      { formActionOrigins: [new URL(account.connection.authorizeUrl).origin] },
    );
  }

  /** Shared checks of both POSTs: link still good, same browser, fresh CSRF token. */
  private async checkPost(
    req: IncomingMessage,
    token: string,
  ): Promise<
    { record: ConsentLinkRecord; account: ResolvedAccount; browser: string } | { page: MessagePage }
  > {
    const form = await readForm(req);
    const opened = await this.openLink(token);
    if ('page' in opened) return opened;
    const browser = browserId(req);
    if (browser.isNew) return { page: pages.cookiesNeeded() };
    if (
      !this.deps.csrf.verify(browser.id, `consent:${opened.record.tokenHash}`, form.get('csrf') ?? undefined)
    ) {
      return { page: pages.formExpired() };
    }
    return { ...opened, browser: browser.id };
  }

  /** POST /consent/<token>/start -> the provider's sign-in page. */
  async start(req: IncomingMessage, res: ServerResponse, token: string): Promise<void> {
    const checked = await this.checkPost(req, token);
    if ('page' in checked) return sendMessage(res, checked.page);
    const { record, account, browser } = checked;
    const callback = redirectUri(this.deps.baseUrl());
    const auth = this.deps.grants.startAuthorization(account, callback);
    // In the store, so that the provider may send the owner back to any instance. Keeps at most
    // MAX_PENDING_PER_LINK consents in progress for one link, dropping that link's oldest: pressing
    // the button over and over (or a leaked link) then fills only its own few places, never the
    // global table where other owners' consents wait. The newest press always works, so the owner
    // who pressed last is never locked out; refusing new presses instead would let three presses
    // shut the owner out for the full 15 minutes.
    const now = this.deps.now();
    await this.deps.store.putPendingConsent(
      {
        state: auth.state,
        linkHash: record.tokenHash,
        accountId: account.id,
        username: account.username,
        codeVerifier: auth.codeVerifier,
        redirectUri: callback,
        browser,
        expiresAt: now + PENDING_CONSENT_TTL_MS,
      },
      { now, maxPerLink: MAX_PENDING_PER_LINK, maxTotal: MAX_PENDING_CONSENTS },
    );
    this.deps.logger.info({ account: account.id }, 'consent started');
    redirect(res, auth.url);
  }

  /** The link behind a consent in progress, if it may still be used now; else the page saying why. */
  private async linkStillUsable(
    linkHash: string,
  ): Promise<{ record: ConsentLinkRecord } | { page: MessagePage }> {
    const record = await this.deps.store.getConsentLink(linkHash);
    if (!record) return { page: pages.badLink() };
    if (record.usedAt !== undefined) return { page: pages.usedLink(record.usedAt) };
    // The owner may have spent longer at the provider than the link had left.
    if (this.deps.now() >= record.expiresAt) return { page: pages.expiredLink(record.expiresAt) };
    return { record };
  }

  /** GET /oauth/callback?code=..&state=.. (or ?error=..) */
  async callback(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): Promise<void> {
    const state = query.get('state') ?? '';
    const now = this.deps.now();
    const found = state ? await this.deps.store.getPendingConsent(state, now) : undefined;
    if (!found) {
      const done = state ? await this.deps.store.getCompletedConsent(state, now) : undefined;
      if (done) return sendMessage(res, pages.alreadyDone(done.email));
      this.deps.logger.warn('consent callback with an unknown or expired state');
      return sendMessage(res, pages.stateMismatch());
    }
    // Checked before the state is spent: a callback from another browser (someone who got hold of the
    // redirect URL) must not destroy the owner's consent in progress.
    if (browserId(req).id !== found.browser) {
      this.deps.logger.warn({ account: found.accountId }, 'consent callback from another browser');
      return sendMessage(res, pages.stateMismatch());
    }
    // Spent now, in one step in the store: a state is good for one callback only, on any instance.
    const p = await this.deps.store.takePendingConsent(state, now);
    if (!p) return sendMessage(res, pages.stateMismatch());
    const usable = await this.linkStillUsable(p.linkHash);
    if ('page' in usable) return sendMessage(res, usable.page);
    const { record } = usable;
    const account = this.deps.resolveAccount(p.username);
    if (!account || account.id !== p.accountId) return sendMessage(res, pages.accountGone(p.username));
    const provider = providerName(account.connection);

    const error = query.get('error');
    if (error !== null) {
      const code = safeCode(error);
      this.deps.logger.warn({ account: account.id, error: code }, 'provider refused consent');
      if (code === 'access_denied') return sendMessage(res, pages.accessDenied(provider, record.expiresAt));
      if (code === 'invalid_scope') return sendMessage(res, pages.invalidScope(provider));
      return sendMessage(res, pages.providerError(provider, code));
    }
    const code = query.get('code');
    if (!code) return sendMessage(res, pages.providerError(provider, 'no authorization code'));

    let grant: PendingGrant;
    try {
      grant = await this.deps.grants.exchangeCode(account, {
        code,
        redirectUri: p.redirectUri,
        codeVerifier: p.codeVerifier,
      });
    } catch (err) {
      this.deps.logger.warn({ account: account.id, err: errorText(err) }, 'code exchange failed');
      return sendMessage(res, pages.exchangeFailed(provider, errorText(err)));
    }
    await this.finish(res, { state, account, linkHash: p.linkHash, grant, sameBrowser: true });
  }

  /**
   * Identity check, spend the link, store, app password, notify, welcome page.
   * `sameBrowser`: the sign-in came back to the browser that started it (the authorization-code
   * redirect, matched by state and cookie). A device code proves no such thing: whoever pressed the
   * button may have phished the owner into entering the code elsewhere, so that page gets no password.
   */
  private async finish(
    res: ServerResponse,
    f: {
      state: string;
      account: ResolvedAccount;
      linkHash: string;
      grant: PendingGrant;
      sameBrowser: boolean;
    },
  ): Promise<void> {
    const { account, grant } = f;
    const provider = providerName(account.connection);
    if (!this.deps.grants.identityAllowed(account, grant.identity)) {
      this.deps.logger.warn(
        { account: account.id, identity: grant.identity.email },
        'consent refused: signed in as someone else',
      );
      return sendMessage(res, pages.identityMismatch(provider, grant.identity.email, account.email));
    }
    // Again here: the code exchange took time, and a device code may be entered long after the press.
    const usable = await this.linkStillUsable(f.linkHash);
    if ('page' in usable) {
      this.deps.logger.warn({ account: account.id }, 'consent refused: link used or expired meanwhile');
      return sendMessage(res, usable.page);
    }
    const now = this.deps.now();
    // Store first: if the provider sent no usable grant the link must stay valid for another try.
    // Two browsers finishing the same link at once could both store, but both passed the identity
    // check for this very mailbox, so either grant is right; only one of them sees the welcome page.
    try {
      await grant.save();
    } catch (err) {
      this.deps.logger.warn({ account: account.id, err: errorText(err) }, 'could not store the grant');
      return sendMessage(res, pages.exchangeFailed(provider, errorText(err)));
    }
    if (!(await spendConsentLink(this.deps.store, f.linkHash, now))) {
      const record = await this.deps.store.getConsentLink(f.linkHash);
      return sendMessage(res, pages.usedLink(record?.usedAt));
    }
    // With a token manager that records consents itself, it has the fresh token and sends the event.
    if (!this.deps.tokensRecordConsent) this.deps.tokens.invalidate(account.id);
    let appPassword: { password: string; label: string } | undefined;
    const withheld = !account.passwordHash && !f.sameBrowser;
    if (!account.passwordHash && f.sameBrowser) {
      const created = await createAppPassword(this.deps.store, account.id, webConsentLabel(now), { now });
      appPassword = { password: created.password, label: created.record.label };
    }
    await this.deps.store.putCompletedConsent(
      { state: f.state, accountId: account.id, email: account.email, expiresAt: now + 3600_000 },
      now,
    );
    this.deps.logger.info(
      { account: account.id, appPassword: Boolean(appPassword), device: !f.sameBrowser },
      'consent complete',
    );
    if (!this.deps.tokensRecordConsent) {
      void this.deps.notifier?.notify({
        kind: 'consent-complete',
        accountId: account.id,
        username: account.username,
      });
    }
    const publicHost = new URL(this.deps.baseUrl()).hostname;
    sendHtml(
      res,
      200,
      welcomePage({
        // The owner's name only greets the browser that signed in itself.
        ...(grant.identity.name && f.sameBrowser ? { name: grant.identity.name } : {}),
        mailbox: account.email,
        username: account.username,
        provider,
        ...(appPassword ? { appPassword: appPassword.password, appPasswordLabel: appPassword.label } : {}),
        ...(withheld ? { appPasswordWithheld: true } : {}),
        listen: this.deps.config.listen,
        publicHost,
      }),
    );
  }

  /** POST /consent/<token>/device -> start RFC 8628 and show the code. */
  async startDevice(req: IncomingMessage, res: ServerResponse, token: string): Promise<void> {
    const checked = await this.checkPost(req, token);
    if ('page' in checked) return sendMessage(res, checked.page);
    const { record, account, browser } = checked;
    const startDevice = this.deps.grants.startDevice?.bind(this.deps.grants);
    if (!deviceFlowAvailable(account) || !startDevice) return sendMessage(res, pages.deviceUnavailable());
    // One live session per link: the same browser pressing again sees its code again; another browser
    // gets a new code, and the old session is stopped (see replaceDevice).
    const currentId = this.deviceByLink.get(record.tokenHash);
    const current = currentId === undefined ? undefined : this.devices.get(currentId);
    if (
      currentId !== undefined &&
      current?.browser === browser &&
      (current.status === 'pending' || current.status === 'approved') &&
      current.codeExpiresAt > this.deps.now()
    ) {
      return redirect(res, `/consent/device/${currentId}`);
    }
    const provider = providerName(account.connection);
    let started;
    try {
      started = await startDevice(account);
    } catch (err) {
      this.deps.logger.warn({ account: account.id, err: errorText(err) }, 'device authorization failed');
      return sendMessage(res, pages.providerError(provider, errorText(err)));
    }
    const id = randomBytes(24).toString('base64url');
    const session: DeviceSession = {
      status: 'pending',
      browser,
      linkHash: record.tokenHash,
      username: account.username,
      userCode: started.userCode,
      verificationUri: started.verificationUri,
      codeExpiresAt: started.expiresAt,
      expiresAt: started.expiresAt + PENDING_CONSENT_TTL_MS,
      cancel: () => started.cancel(),
    };
    // Looked up again after the await: a concurrent press may have registered its session meanwhile.
    this.replaceDevice(record.tokenHash);
    this.devices.set(id, session);
    this.deviceByLink.set(record.tokenHash, id);
    started.result.then(
      (grant) => {
        Object.assign(
          session,
          this.deps.grants.identityAllowed(account, grant.identity)
            ? { status: 'approved', grant }
            : { status: 'mismatch', identity: grant.identity.email },
        );
      },
      (err: unknown) => {
        Object.assign(session, { status: 'failed', reason: errorText(err) });
      },
    );
    this.deps.logger.info({ account: account.id }, 'device consent started');
    redirect(res, `/consent/device/${id}`);
  }

  /** Stops and forgets the link's current device session, if any; its page then says it was replaced. */
  private replaceDevice(linkHash: string): void {
    const id = this.deviceByLink.get(linkHash);
    if (id === undefined) return;
    const session = this.devices.get(id);
    this.deviceByLink.delete(linkHash);
    if (!session) return;
    this.devices.delete(id);
    session.cancel();
    this.replacedDevices.set(id, { browser: session.browser, expiresAt: session.expiresAt });
  }

  /** GET /consent/device/<id>: waiting page (refreshes itself), then the outcome. */
  async showDevice(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const browser = browserId(req).id;
    if (this.replacedDevices.get(id)?.browser === browser) return sendMessage(res, pages.deviceReplaced());
    const session = this.devices.get(id);
    if (!session || browser !== session.browser) return sendMessage(res, pages.stateMismatch());
    const account = this.deps.resolveAccount(session.username);
    if (!account) return sendMessage(res, pages.accountGone(session.username));
    const provider = providerName(account.connection);
    switch (session.status) {
      case 'pending':
        return sendHtml(
          res,
          200,
          devicePage({
            mailbox: account.email,
            provider,
            userCode: session.userCode,
            verificationUri: session.verificationUri,
            expiresAt: session.codeExpiresAt,
          }),
        );
      case 'failed':
        return sendMessage(res, pages.deviceFailed(provider, session.reason));
      case 'mismatch':
        return sendMessage(res, pages.identityMismatch(provider, session.identity, account.email));
      case 'done':
        return sendMessage(res, pages.alreadyDone(account.email));
      case 'refused':
        return sendMessage(res, session.page);
      case 'approved': {
        const grant = session.grant;
        const usable = await this.linkStillUsable(session.linkHash);
        if ('page' in usable) {
          Object.assign(session, { status: 'refused', page: usable.page });
          return sendMessage(res, usable.page);
        }
        Object.assign(session, { status: 'done' });
        return this.finish(res, {
          state: `device:${id}`,
          account,
          linkHash: session.linkHash,
          grant,
          sameBrowser: false,
        });
      }
    }
  }
}

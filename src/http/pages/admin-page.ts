import type { ConnectionConfig } from '../../config/types.js';
import type { AccountState, AppPasswordRecord } from '../../oauth/types.js';

/** A stored grant's state, or `unreadable` when its row cannot be decrypted. */
export type AdminAccountState = AccountState | 'unreadable';
import { html, type SafeHtml } from '../html.js';
import { layout } from '../layout.js';
import { formatTime, maskSecret, providerName } from './format.js';

export interface AdminAccountRow {
  /** What to pass to "create consent link": the username, or undefined for a pattern entry. */
  username?: string;
  /** The config entry (e.g. `*@example.com`) or the concrete username. */
  label: string;
  mailbox?: string;
  connection: string;
  state?: AdminAccountState;
  expiresAt?: number;
  lastRefreshAt?: number;
  lastError?: string;
  appPasswords: AppPasswordRecord[];
  hasAdminPassword: boolean;
  /** How the account sends, for connections that may use Microsoft Graph (one short line). */
  sending?: string;
  /** Client-credentials or service-account connection: nobody consents, so no consent buttons. */
  noConsent?: 'app-only' | 'service account';
}

export interface AdminPageModel {
  connections: ConnectionConfig[];
  accounts: AdminAccountRow[];
  csrf: string;
  now: number;
}

const STATE_LABELS: Record<AdminAccountState, string> = {
  active: 'Active',
  'needs-consent': 'Needs consent',
  failing: 'Failing',
  unreadable: 'Unreadable',
};

function stateBadge(state: AdminAccountState | undefined): SafeHtml {
  if (!state) return html`<span class="badge none">Not connected</span>`;
  return html`<span class="badge ${state}">${STATE_LABELS[state]}</span>`;
}

function appPasswordList(row: AdminAccountRow): SafeHtml | string {
  const items = row.appPasswords.map(
    (p) =>
      html`<li>
        ${p.label}
        <div class="muted small">
          ${p.lastUsedAt === undefined ? 'never used' : html`used ${formatTime(p.lastUsedAt)}`}
        </div>
      </li>`,
  );
  const admin = row.hasAdminPassword ? html`<div class="small">admin-set password</div>` : '';
  if (items.length)
    return html`${admin}
      <ul class="plain">
        ${items}
      </ul>`;
  return row.hasAdminPassword ? admin : html`<span class="muted">none</span>`;
}

function hidden(csrf: string, username: string): SafeHtml {
  return html`<input type="hidden" name="csrf" value="${csrf}" />
    <input type="hidden" name="username" value="${username}" />`;
}

function accountActions(row: AdminAccountRow, csrf: string): SafeHtml {
  if (row.noConsent) return html`<span class="muted small">${row.noConsent}: no consent needed</span>`;
  if (row.username) {
    return html`<div class="stack">
      <form
        method="post"
        action="/admin/refresh"
        target="_blank"
        title="Opens the consent page in a new window"
      >
        ${hidden(csrf, row.username)}
        <button type="submit" class="small">Refresh token</button>
      </form>
      <form method="post" action="/admin/consent-link">
        ${hidden(csrf, row.username)}
        <button type="submit" class="small secondary">Create consent link</button>
      </form>
    </div>`;
  }
  return html`<form method="post" action="/admin/consent-link" class="stack">
    <input type="hidden" name="csrf" value="${csrf}" />
    <label class="small" for="addr-${row.label}">Mailbox address</label>
    <input
      type="email"
      id="addr-${row.label}"
      name="username"
      required
      placeholder="${row.label.replace('*', 'name')}"
    />
    <button type="submit" class="small secondary">Create consent link</button>
  </form>`;
}

function tokenTimes(a: AdminAccountRow): SafeHtml | string {
  if (a.expiresAt === undefined && a.lastRefreshAt === undefined) return '—';
  return html`<div>expires <span class="nowrap">${formatTime(a.expiresAt)}</span></div>
    <div class="muted">refreshed <span class="nowrap">${formatTime(a.lastRefreshAt)}</span></div>`;
}

export function adminPage(m: AdminPageModel): SafeHtml {
  const connections = m.connections.map(
    (c) =>
      html`<tr>
        <th scope="row">${c.name}</th>
        <td>${providerName(c)}</td>
        <td><code>${c.clientId}</code></td>
        <td><code>${maskSecret(c.clientSecret)}</code></td>
        <td>${c.projectId ?? c.tenantId ?? '—'}</td>
        <td>${c.grant.replace('_', ' ')}</td>
      </tr>`,
  );
  const accounts = m.accounts.map(
    (a) =>
      html`<tr>
        <th scope="row">
          ${a.label}${a.mailbox && a.mailbox !== a.label ? html`<div class="small muted">${a.mailbox}</div>` : ''}
        </th>
        <td>${a.connection}${a.sending ? html`<div class="small muted">${a.sending}</div>` : ''}</td>
        <td>${stateBadge(a.state)}</td>
        <td class="small">${tokenTimes(a)}</td>
        <td class="small error">${a.lastError ?? '—'}</td>
        <td>${appPasswordList(a)}</td>
        <td>${accountActions(a, m.csrf)}</td>
      </tr>`,
  );
  return layout({
    title: 'Administration',
    wide: true,
    body: html`<div class="card">
        <h1>Administration</h1>
        <p class="muted">
          Status as of ${formatTime(m.now)}. “Refresh token” opens the consent page in a new window; sign in
          there as the mailbox owner, or send a consent link instead.
        </p>
        <h2>Accounts</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Account</th>
                <th scope="col">Connection</th>
                <th scope="col">State</th>
                <th scope="col">Access token</th>
                <th scope="col">Last error</th>
                <th scope="col">App passwords</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              ${
                accounts.length
                  ? accounts
                  : html`<tr>
                      <td colspan="7" class="muted">No accounts configured.</td>
                    </tr>`
              }
            </tbody>
          </table>
        </div>
      </div>
      <div class="card">
        <h2>Connections</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Provider</th>
                <th scope="col">Client ID</th>
                <th scope="col">Client secret</th>
                <th scope="col">Project / tenant</th>
                <th scope="col">Grant</th>
              </tr>
            </thead>
            <tbody>
              ${connections}
            </tbody>
          </table>
        </div>
      </div>`,
  });
}

export function consentLinkCreatedPage(m: { username: string; url: string; expiresAt: number }): SafeHtml {
  return layout({
    title: 'Consent link created',
    body: html`<div class="card" role="status">
      <h1>Consent link created</h1>
      <p class="lead">
        Send this link to the owner of <strong>${m.username}</strong>. It works once, until
        ${formatTime(m.expiresAt)}.
      </p>
      <output class="secret small" id="consent-link">${m.url}</output>
      <p class="small muted">
        Anyone with the link can connect this mailbox for as long as it is valid, but only by signing in as
        ${m.username}.
      </p>
      <p><a href="/admin">Back to administration</a></p>
    </div>`,
  });
}

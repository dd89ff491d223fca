import type { ListenerConfig, Protocol } from '../../config/types.js';
import { html, type SafeHtml } from '../html.js';
import { layout } from '../layout.js';
import { clientHost, formatTime, tlsLabel } from './format.js';

export interface ConsentPageModel {
  mailbox: string;
  provider: string;
  expiresAt: number;
  startAction: string;
  /** Form action for the device-code alternative, when the connection allows it. */
  deviceAction?: string;
  csrf: string;
}

export function consentPage(m: ConsentPageModel): SafeHtml {
  return layout({
    title: 'Connect your mailbox',
    body: html`<div class="card">
      <h1>Connect your mailbox</h1>
      <p class="lead">
        Let your mail program use <strong>${m.mailbox}</strong> through this server. You sign in at
        ${m.provider}; your ${m.provider} password is never shown to this server.
      </p>
      <dl class="facts">
        <dt>Mailbox</dt>
        <dd>${m.mailbox}</dd>
        <dt>Sign in with</dt>
        <dd>${m.provider}</dd>
        <dt>Link valid until</dt>
        <dd>${formatTime(m.expiresAt)}</dd>
      </dl>
      <ol class="steps">
        <li>Press the button below.</li>
        <li>Sign in at ${m.provider} as <strong>${m.mailbox}</strong> and allow access.</li>
        <li>You come back here and see how to set up your mail program.</li>
      </ol>
      <form method="post" action="${m.startAction}" class="actions">
        <input type="hidden" name="csrf" value="${m.csrf}" />
        <button type="submit">Continue to ${m.provider}</button>
      </form>
      ${
        m.deviceAction
          ? html`<p class="or">
                Signing in on another device, or this page cannot be reached from your browser?
              </p>
              <form method="post" action="${m.deviceAction}">
                <input type="hidden" name="csrf" value="${m.csrf}" />
                <button type="submit" class="secondary">Sign in with a code instead</button>
              </form>`
          : ''
      }
      <p class="small muted">
        This link is only for ${m.mailbox} and works once. If you did not expect it, you can ignore it.
      </p>
    </div>`,
  });
}

export interface WelcomePageModel {
  name?: string;
  mailbox: string;
  username: string;
  provider: string;
  /** Shown once, never stored. */
  appPassword?: string;
  appPasswordLabel?: string;
  /**
   * The consent was finished with a code on another device, so the browser reading this page may not
   * be the owner's: no app password here, only how to get one.
   */
  appPasswordWithheld?: boolean;
  listen: Record<Protocol, ListenerConfig[]>;
  publicHost: string;
}

const PROTOCOL_LABELS: Array<[Exclude<Protocol, 'http'>, string]> = [
  ['imap', 'Incoming mail (IMAP)'],
  ['pop3', 'Incoming mail (POP3)'],
  ['smtp', 'Outgoing mail (SMTP)'],
];

function serverRows(m: WelcomePageModel): SafeHtml[] {
  const rows: SafeHtml[] = [];
  for (const [protocol, label] of PROTOCOL_LABELS) {
    for (const l of m.listen[protocol] ?? []) {
      rows.push(
        html`<tr>
          <th scope="row">${label}</th>
          <td><code>${clientHost(l, m.publicHost)}</code></td>
          <td>${l.port}</td>
          <td>${tlsLabel(l.tls)}</td>
        </tr>`,
      );
    }
  }
  return rows;
}

export function welcomePage(m: WelcomePageModel): SafeHtml {
  const rows = serverRows(m);
  return layout({
    title: 'Your mailbox is connected',
    body: html`<div class="card" role="status">
        <div class="icon ok" aria-hidden="true">✓</div>
        <h1>${m.name ? html`Welcome, ${m.name}!` : 'Welcome!'}</h1>
        <p class="lead">
          <strong>${m.mailbox}</strong> is now connected. Your mail program can reach it through this server,
          and access renews by itself.
        </p>
        ${
          m.appPassword
            ? html`<div class="notice ok">
                <h2>Your app password</h2>
                <p>Use this password in your mail program instead of your ${m.provider} password.</p>
                <output class="secret" id="app-password" aria-label="App password">${m.appPassword}</output>
                <p class="small">
                  <strong
                    >Write it down or paste it into your mail program now: it is shown only this once.</strong
                  >
                  It is saved as “${m.appPasswordLabel ?? 'app password'}”; your administrator can remove it
                  or make another one.
                </p>
              </div>`
            : m.appPasswordWithheld
              ? html`<div class="notice" id="app-password-elsewhere">
                  <h2>Getting an app password</h2>
                  <p>
                    You signed in with a code, maybe on another device, so no password is shown on this page.
                    Ask your administrator for an app password for this mailbox; they make one with
                    <code>xoauth-proxy app-password create ${m.username} --label "your device"</code>.
                  </p>
                </div>`
              : html`<p>Use the password your administrator gave you for this mailbox.</p>`
        }
      </div>
      <div class="card">
        <h2>Set up your mail program</h2>
        <dl class="facts">
          <dt>Username</dt>
          <dd><code>${m.username}</code></dd>
          <dt>Password</dt>
          <dd>
            ${
              m.appPassword
                ? 'the app password above'
                : m.appPasswordWithheld
                  ? 'an app password from your administrator'
                  : 'the one from your administrator'
            }
          </dd>
        </dl>
        ${
          rows.length > 0
            ? html`<div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Server</th>
                      <th scope="col">Host name</th>
                      <th scope="col">Port</th>
                      <th scope="col">Security</th>
                    </tr>
                  </thead>
                  <tbody>
                    ${rows}
                  </tbody>
                </table>
              </div>`
            : html`<p>Ask your administrator for the server name and ports.</p>`
        }
        <p class="small muted">
          Authentication: normal password. You only need to come back here if you remove this server's access
          at ${m.provider} or change your password there.
        </p>
      </div>`,
  });
}

export interface DevicePageModel {
  mailbox: string;
  provider: string;
  userCode: string;
  verificationUri: string;
  expiresAt: number;
}

export function devicePage(m: DevicePageModel): SafeHtml {
  return layout({
    title: 'Sign in with a code',
    refreshSeconds: 5,
    body: html`<div class="card">
      <h1>Sign in with a code</h1>
      <p class="lead">Connect <strong>${m.mailbox}</strong> from any phone or computer.</p>
      <ol class="steps">
        <li>
          Open
          ${
            /^https?:\/\//i.test(m.verificationUri)
              ? html`<a href="${m.verificationUri}" target="_blank" rel="noopener noreferrer"
                  >${m.verificationUri}</a
                >`
              : html`<code>${m.verificationUri}</code>`
          }
        </li>
        <li>
          Enter this code:<output class="secret" id="user-code" aria-label="Code">${m.userCode}</output>
        </li>
        <li>Sign in at ${m.provider} as <strong>${m.mailbox}</strong> and allow access.</li>
      </ol>
      <p class="notice warn" role="status">
        Waiting for you to finish… this page updates by itself. The code works until
        ${formatTime(m.expiresAt)}.
      </p>
    </div>`,
  });
}

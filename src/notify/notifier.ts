/**
 * Tells an admin when an account needs attention (or is fine again): POSTs JSON to a webhook and/or
 * runs a command, rate limited per account and event kind. Never throws and never blocks a login:
 * a broken webhook is logged and forgotten.
 */
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import type { NotifySettings } from '../config/types.js';

export type NotifyEventKind = 'needs-consent' | 'failing' | 'consent-complete';

export interface NotifyEvent {
  kind: NotifyEventKind;
  accountId: string;
  /** What the mail client types, when known (differs from the mailbox for aliases). */
  username?: string;
  /** Safe, secret-free text (e.g. the provider's error code). */
  reason?: string;
}

/** The JSON body of a webhook call, and (as env vars) what a command gets. */
export interface NotificationPayload {
  event: NotifyEventKind;
  account: string;
  username: string;
  reason: string;
  /** A fresh one-off consent link, for needs-consent only. */
  consentUrl?: string;
  at: string;
  message: string;
}

export type NotifyOutcome = 'sent' | 'rate-limited' | 'disabled';

export interface Notifier {
  notify(event: NotifyEvent): Promise<NotifyOutcome>;
}

export interface NotifierOptions {
  settings: NotifySettings;
  logger: Logger;
  /** Makes a fresh consent link for an account, if one can be made (needs the HTTP listener). */
  consentLinkFor?: (accountId: string, username: string | undefined) => Promise<string | undefined>;
  now?: () => number;
  fetch?: typeof fetch;
  webhookTimeoutMs?: number;
  commandTimeoutMs?: number;
}

const MESSAGES: Record<NotifyEventKind, string> = {
  'needs-consent': 'The mailbox owner must sign in again to grant mail access.',
  failing: 'Refreshing the access token keeps failing; mail clients may be turned away.',
  'consent-complete': 'The mailbox owner granted mail access; the account works again.',
};

export function createNotifier(options: NotifierOptions): Notifier {
  const { settings, logger } = options;
  const now = options.now ?? Date.now;
  const doFetch = options.fetch ?? fetch;
  const lastSent = new Map<string, number>();
  const enabled = Boolean(settings.webhook || settings.command);

  async function callWebhook(url: string, payload: NotificationPayload): Promise<void> {
    const res = await doFetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'xoauth-proxy' },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(options.webhookTimeoutMs ?? 10_000),
    });
    // Drain the body so the connection can be reused or closed.
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw new Error(`webhook answered HTTP ${res.status}`);
  }

  function runCommand(command: string, payload: NotificationPayload): Promise<void> {
    const env: NodeJS.ProcessEnv = {
      ...baseEnvironment(process.env),
      XOAUTH_PROXY_EVENT: payload.event,
      XOAUTH_PROXY_ACCOUNT: payload.account,
      XOAUTH_PROXY_USERNAME: payload.username,
      XOAUTH_PROXY_REASON: payload.reason,
      XOAUTH_PROXY_MESSAGE: payload.message,
      XOAUTH_PROXY_AT: payload.at,
    };
    if (payload.consentUrl) env.XOAUTH_PROXY_CONSENT_URL = payload.consentUrl;
    // execFile without a shell: the account name can never be interpreted as shell syntax.
    return new Promise((resolve, reject) => {
      execFile(
        command,
        [payload.event, payload.account],
        { env, shell: false, timeout: options.commandTimeoutMs ?? 30_000, windowsHide: true },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  return {
    async notify(event) {
      if (!enabled) return 'disabled';
      const key = `${event.accountId}\u0000${event.kind}`;
      const t = now();
      const last = lastSent.get(key);
      if (last !== undefined && t - last < settings.minIntervalMs) return 'rate-limited';
      lastSent.set(key, t);

      let consentUrl: string | undefined;
      // Only a refused grant needs the owner. A `failing` account is a provider outage with its
      // tokens kept: a link there would send owners to consent for nothing, and every such link is one
      // more live credential in a mailbox or chat channel.
      if (event.kind === 'needs-consent' && options.consentLinkFor) {
        try {
          consentUrl = await options.consentLinkFor(event.accountId, event.username);
        } catch (err) {
          logger.warn({ account: event.accountId, err: String(err) }, 'could not make a consent link');
        }
      }
      const payload: NotificationPayload = {
        event: event.kind,
        account: event.accountId,
        username: event.username ?? event.accountId,
        reason: event.reason ?? '',
        ...(consentUrl ? { consentUrl } : {}),
        at: new Date(t).toISOString(),
        message: MESSAGES[event.kind],
      };
      const jobs: Promise<void>[] = [];
      if (settings.webhook) {
        jobs.push(
          callWebhook(settings.webhook, payload).catch((err: unknown) => {
            // The webhook URL itself may hold a secret (Slack-style), so it is not logged.
            logger.warn(
              { account: event.accountId, event: event.kind, err: errorText(err) },
              'webhook failed',
            );
          }),
        );
      }
      if (settings.command) {
        jobs.push(
          runCommand(settings.command, payload).catch((err: unknown) => {
            logger.warn(
              { account: event.accountId, event: event.kind, err: errorText(err) },
              'notify command failed',
            );
          }),
        );
      }
      await Promise.all(jobs);
      logger.info({ account: event.accountId, event: event.kind }, 'notification sent');
      return 'sent';
    },
  };
}

/**
 * What the command inherits from the proxy's environment: enough to find programs and format text.
 * Never all of it: XOAUTH_PROXY_KEY (the store key) and the client secrets often come in by env.
 */
const INHERITED_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ'] as const;

function baseEnvironment(from: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of INHERITED_ENV) {
    const value = from[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Wiring for notifications: a notifier built from the config (with fresh consent links when there is
 * an HTTP listener to open them on), and the adapter from the token manager's events.
 */
import type { Logger } from 'pino';
import { resolveAccount } from '../config/accounts.js';
import type { Config } from '../config/types.js';
import { publicBaseUrl } from '../config/public-url.js';
import { createConsentLink } from '../oauth/consent-links.js';
import type { TokenEvent, Store } from '../oauth/types.js';
import { createNotifier, type Notifier, type NotifyEventKind } from './notifier.js';

export { createNotifier, type Notifier, type NotifyEvent, type NotifyEventKind } from './notifier.js';

/** Consent links in notifications live this long: long enough for a weekend. */
export const NOTIFY_CONSENT_LINK_TTL_MS = 72 * 3600_000;

export function createConfiguredNotifier(
  config: Config,
  store: Store,
  logger: Logger,
  options: { now?: () => number; fetch?: typeof fetch } = {},
): Notifier {
  const hasHttp = config.listen.http.length > 0;
  return createNotifier({
    settings: config.notify,
    logger,
    ...(options.now ? { now: options.now } : {}),
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(hasHttp
      ? {
          consentLinkFor: async (accountId: string, username: string | undefined) => {
            const account = resolveAccount(config, username ?? accountId);
            if (!account || account.id !== accountId) return undefined;
            const link = await createConsentLink(store, account, {
              baseUrl: publicBaseUrl(config),
              expiresMs: NOTIFY_CONSENT_LINK_TTL_MS,
              ...(options.now ? { now: options.now() } : {}),
            });
            return link.url;
          },
        }
      : {}),
  });
}

const EVENT_KINDS: Partial<Record<TokenEvent['kind'], NotifyEventKind>> = {
  'needs-consent': 'needs-consent',
  failing: 'failing',
  consented: 'consent-complete',
};

/** For the token manager's onEvent: forwards the events an admin should hear about. */
export function notifyOnTokenEvent(notifier: Notifier): (event: TokenEvent) => void {
  return (event) => {
    const kind = EVENT_KINDS[event.kind];
    if (!kind) return;
    void notifier.notify({
      kind,
      accountId: event.accountId,
      ...(event.error !== undefined ? { reason: event.error } : {}),
    });
  };
}

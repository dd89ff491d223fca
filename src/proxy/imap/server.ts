/**
 * The IMAP front as a ProxyServer: a listener whose sessions speak IMAP before login and relay after.
 */
import type { ListenerConfig } from '../../config/types.js';
import { createFrontServer } from '../shared/front-server.js';
import type { ProxyDeps, ProxyServer } from '../shared/types.js';
import { DEFAULT_IMAP_LIMITS, imapLimitsFrom, type ImapLimits } from './limits.js';
import { ImapSession } from './session.js';

export function createImapServer(
  listener: ListenerConfig,
  deps: ProxyDeps,
  limits?: Partial<ImapLimits>,
): ProxyServer {
  const base = deps.config.settings?.limits
    ? imapLimitsFrom(deps.config.settings.limits)
    : DEFAULT_IMAP_LIMITS;
  const effective: ImapLimits = { ...base, ...limits };
  return createFrontServer(
    'imap',
    listener,
    deps,
    (socket, context, d) => new ImapSession(socket, context, d, effective),
  );
}

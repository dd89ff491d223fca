/**
 * The IMAP front as a ProxyServer: a listener whose sessions speak IMAP before login and relay after.
 */
import type { ListenerConfig } from '../../config/types.js';
import { ProxyListener } from '../shared/listener.js';
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
  const logger = deps.logger.child({ listener: `imap ${listener.host}:${listener.port}` });
  return new ProxyListener(
    listener,
    (socket, context) => new ImapSession(socket, context, { ...deps, logger }, effective),
    logger,
  );
}

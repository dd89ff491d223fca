/**
 * The POP3 front as a ProxyServer: a shared listener whose sessions speak POP3 before login and relay
 * bytes to the account's upstream (pop.gmail.com, outlook.office365.com, ...) after it.
 */
import type { ListenerConfig } from '../../config/types.js';
import { ProxyListener } from '../shared/listener.js';
import type { ProxyDeps, ProxyServer } from '../shared/types.js';
import { DEFAULT_POP3_LIMITS, pop3LimitsFrom, type Pop3Limits } from './limits.js';
import { Pop3Session } from './session.js';

export function createPop3Server(
  listener: ListenerConfig,
  deps: ProxyDeps,
  limits?: Partial<Pop3Limits>,
): ProxyServer {
  const base = deps.config.settings?.limits
    ? pop3LimitsFrom(deps.config.settings.limits)
    : DEFAULT_POP3_LIMITS;
  const effective: Pop3Limits = { ...base, ...limits };
  const logger = deps.logger.child({ protocol: 'pop3', listener: `${listener.host}:${listener.port}` });
  return new ProxyListener(
    listener,
    (socket, context) => new Pop3Session(socket, context, { ...deps, logger }, effective),
    logger,
  );
}

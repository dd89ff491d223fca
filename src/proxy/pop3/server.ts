/**
 * The POP3 front as a ProxyServer: a shared listener whose sessions speak POP3 before login and relay
 * bytes to the account's upstream (pop.gmail.com, outlook.office365.com, ...) after it.
 */
import type { ListenerConfig } from '../../config/types.js';
import { createFrontServer } from '../shared/front-server.js';
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
  return createFrontServer(
    'pop3',
    listener,
    deps,
    (socket, context, d) => new Pop3Session(socket, context, d, effective),
  );
}

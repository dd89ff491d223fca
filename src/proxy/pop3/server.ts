/**
 * POP3 as a protocol for the shared session: our own AUTHORIZATION dialogue before login, the
 * account's upstream (pop.gmail.com, outlook.office365.com, ...) after it.
 */
import type { ListenerConfig } from '../../config/types.js';
import type { AuthenticateAction } from '../shared/front.js';
import { createProtocolServer, type Protocol } from '../shared/session.js';
import type { ProxyDeps, ProxyServer } from '../shared/types.js';
import { Pop3Front } from './front.js';
import { intersectExtensions } from '../shared/upstream-capabilities.js';
import { CAPA_PASS_THROUGH, REPLY } from './replies.js';
import { pop3UpstreamLogin, type Pop3Upstream } from './upstream.js';

export const pop3Protocol: Protocol<Pop3Upstream, AuthenticateAction> = {
  name: 'pop3',
  tlsCommand: 'STLS',
  closeGraceMs: 5_000,
  // A POP3 client waits for the answer to PASS, so this is never reached by an honest one.
  maxBufferDuringLogin: 64 * 1024,
  failedLoginIsOutcome: true,
  busyReply: REPLY.busy,
  front: (context, limits, deps) =>
    new Pop3Front(
      {
        tls: context.listener.tls,
        // What is known now: a client's CAPA never waits for the network.
        upstream: intersectExtensions(deps.capabilities?.lists('pop3') ?? [], CAPA_PASS_THROUGH),
        maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
        maxFailedLogins: limits.maxFailedLogins,
      },
      limits.maxLineLength,
    ),
  upstreamLogin: (_action, limits, deps) => pop3UpstreamLogin(limits.upstreamTimeoutMs, deps.upstreamPool),
};

export function createPop3Server(listener: ListenerConfig, deps: ProxyDeps): ProxyServer {
  return createProtocolServer(pop3Protocol, listener, deps);
}

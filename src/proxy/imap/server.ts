/**
 * IMAP as a protocol for the shared session: our own dialogue before login, the account's upstream
 * after it (the client's OK carries the upstream's capabilities).
 */
import type { ListenerConfig } from '../../config/types.js';
import type { AuthenticateAction } from '../shared/front.js';
import { createProtocolServer, type Protocol } from '../shared/session.js';
import type { ProxyDeps, ProxyServer } from '../shared/types.js';
import { ImapFront } from './front.js';
import { BUSY } from './replies.js';
import { imapUpstreamLogin, type ImapUpstream } from './upstream.js';

export const imapProtocol: Protocol<ImapUpstream, AuthenticateAction> = {
  name: 'imap',
  tlsCommand: 'STARTTLS',
  closeGraceMs: 2_000,
  // Bytes the client pipelines during a login stay in the socket until we know the outcome.
  maxBufferDuringLogin: 0,
  // A failed LOGIN followed by LOGOUT logs `client-quit` (with the failure as the reason).
  failedLoginIsOutcome: false,
  busyReply: BUSY,
  front: (context, limits) =>
    new ImapFront(
      {
        tls: context.listener.tls,
        maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
        maxFailedLogins: limits.maxFailedLogins,
      },
      limits,
      context.secure,
    ),
  upstreamLogin: (_action, limits, deps) => imapUpstreamLogin(limits.upstreamTimeoutMs, deps.upstreamPool),
};

export function createImapServer(listener: ListenerConfig, deps: ProxyDeps): ProxyServer {
  return createProtocolServer(imapProtocol, listener, deps);
}

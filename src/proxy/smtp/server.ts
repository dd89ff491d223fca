/**
 * SMTP as a protocol for the shared session: our own dialogue before AUTH, the account's upstream
 * (Gmail, Exchange Online, ...) after it, or, when the login ends in a local sender (Graph mode), our
 * own mail transaction after it too.
 */
import { hostname } from 'node:os';
import type { ListenerConfig, ResolvedAccount } from '../../config/types.js';
import type { FrontLimits } from '../shared/limits.js';
import type { UpstreamLogin } from '../shared/login.js';
import {
  createProtocolServer,
  isLocalUpstream,
  type LocalUpstream,
  type Protocol,
} from '../shared/session.js';
import type { ProxyDeps, ProxyServer } from '../shared/types.js';
import { SmtpFront } from './front.js';
import type { SmtpAuthenticate } from './machine.js';
import { intersectExtensions } from '../shared/upstream-capabilities.js';
import { EHLO_PASS_THROUGH, REPLY } from './replies.js';
import { smtpUpstreamLogin, type SmtpUpstream } from './upstream.js';

export interface SmtpServerOptions extends SmtpProtocolOptions {
  /** Name in the greeting and EHLO reply; defaults to the host name. */
  serverName?: string;
}

/** What a login may end in: the upstream's SMTP connection (relayed) or a local sender. */
export type SmtpSessionUpstream = SmtpUpstream | LocalUpstream;

export interface SmtpProtocolOptions {
  /**
   * Builds the login for one AUTH; default: the upstream SMTP login (`smtpUpstreamLogin`), relayed.
   * A login whose `connect` resolves to a `LocalUpstream` (`{ sender, label }`) makes the session run
   * the mail transaction itself and hand each message to `sender`; `connect` gets the account, so one
   * login can choose per account (SMTP for some, Graph for others).
   */
  upstreamLogin?: (action: SmtpAuthenticate, limits: FrontLimits) => UpstreamLogin<SmtpSessionUpstream>;
}

/** The default login: AUTH XOAUTH2 at the account's SMTP server, then the relay. */
export function relayLogin(action: SmtpAuthenticate, limits: FrontLimits): UpstreamLogin<SmtpUpstream> {
  return smtpUpstreamLogin({ heloName: action.heloName, timeoutMs: limits.upstreamTimeoutMs });
}

/**
 * A login that sends some accounts' mail itself: `pick` says, per account, whether it gets a local
 * sender (e.g. `send: graph`); everyone else gets `relay`. The local login is accepted once the local
 * password and the account's access token are (performLogin's checks); the sender obtains what it
 * needs for sending on its own.
 */
export function withLocalSenders(
  relay: UpstreamLogin<SmtpUpstream>,
  pick: (
    account: ResolvedAccount,
    signal: AbortSignal,
  ) => LocalUpstream | undefined | Promise<LocalUpstream | undefined>,
): UpstreamLogin<SmtpSessionUpstream> {
  return {
    async connect(account, signal) {
      const local = await pick(account, signal);
      return local ?? relay.connect(account, signal);
    },
    authenticate(upstream, account, accessToken) {
      if (isLocalUpstream(upstream)) return Promise.resolve({ ok: true });
      return relay.authenticate(upstream, account, accessToken);
    },
    close(upstream) {
      if (!isLocalUpstream(upstream)) relay.close(upstream);
    },
  };
}

export function smtpProtocol(
  serverName: string,
  options: SmtpProtocolOptions = {},
): Protocol<SmtpSessionUpstream, SmtpAuthenticate> {
  return {
    name: 'smtp',
    tlsCommand: 'STARTTLS',
    closeGraceMs: 5_000,
    // RFC 2920 clients stop at DATA and wait for 354, so this is never reached by an honest client.
    maxBufferDuringLogin: 64 * 1024,
    failedLoginIsOutcome: true,
    busyReply: REPLY.busy,
    front: (context, limits, deps) =>
      new SmtpFront(
        {
          serverName,
          tls: context.listener.tls,
          maxMessageSize: limits.maxMessageSize,
          // What is known now: a client's EHLO never waits for the network.
          upstream: intersectExtensions(deps.capabilities?.lists('smtp') ?? [], EHLO_PASS_THROUGH),
          maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
          maxFailedLogins: limits.maxFailedLogins,
          maxRecipients: limits.maxRecipients,
          maxMessagesPerSession: limits.maxMessagesPerSession,
        },
        limits.maxLineLength,
      ),
    upstreamLogin: options.upstreamLogin ?? relayLogin,
  };
}

export function createSmtpServer(
  listener: ListenerConfig,
  deps: ProxyDeps,
  options: SmtpServerOptions = {},
): ProxyServer {
  const { serverName, ...protocolOptions } = options;
  return createProtocolServer(smtpProtocol(serverName ?? hostname(), protocolOptions), listener, deps);
}

/**
 * SMTP as a protocol for the shared session: our own dialogue before AUTH, the account's upstream
 * (Gmail, Exchange Online, ...) after it, or, when the login ends in a local sender (Graph mode), our
 * own mail transaction after it too.
 */
import { hostname } from 'node:os';
import type { ListenerConfig } from '../../config/types.js';
import type { FrontLimits } from '../shared/limits.js';
import type { UpstreamLogin } from '../shared/login.js';
import { createProtocolServer, type LocalUpstream, type Protocol } from '../shared/session.js';
import type { ProxyDeps, ProxyServer } from '../shared/types.js';
import { SmtpFront } from './front.js';
import { graphAwareLogin } from './graph-login.js';
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
   * login can choose per account (SMTP for some, Graph for others). Absent, with `deps.graph`:
   * `graphAwareLogin` (./graph-login.ts).
   */
  upstreamLogin?: (
    action: SmtpAuthenticate,
    limits: FrontLimits,
    deps: ProxyDeps,
  ) => UpstreamLogin<SmtpSessionUpstream>;
}

/** The default login: AUTH XOAUTH2 at the account's SMTP server, then the relay. */
export function relayLogin(
  action: SmtpAuthenticate,
  limits: FrontLimits,
  deps: ProxyDeps,
): UpstreamLogin<SmtpUpstream> {
  return smtpUpstreamLogin({
    heloName: action.heloName,
    timeoutMs: limits.upstreamTimeoutMs,
    ...(deps.upstreamPool ? { pool: deps.upstreamPool } : {}),
  });
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
    // Scripts (`printf ... | nc -N`) end their input after QUIT and still read the replies.
    halfClose: true,
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
        deps.messageBudget?.share(),
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
  const graph = deps.graph;
  // Connections with `send: graph` or `auto`: the login may end in a Graph sender instead of a relay.
  if (protocolOptions.upstreamLogin === undefined && graph) {
    protocolOptions.upstreamLogin = (action, limits, sessionDeps) =>
      graphAwareLogin(relayLogin(action, limits, sessionDeps), { graph, tokens: sessionDeps.tokens });
  }
  return createProtocolServer(smtpProtocol(serverName ?? hostname(), protocolOptions), listener, deps);
}

import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Config, ListenerConfig, ResolvedAccount } from '../../config/types.js';
import type { ProxyErrorCode } from '../../errors.js';
import type { Authenticator } from '../../credentials/types.js';
import type { MessageSender } from '../../graph/types.js';
import type { MessageBudget } from './message-budget.js';
import type { TokenProvider } from '../../oauth/types.js';
import type { CapabilitySource } from './upstream-capabilities.js';
import type { UpstreamPool } from './upstream-pool.js';

/** Everything a protocol front needs from the rest of the program. */
export interface ProxyDeps {
  config: Config;
  authenticator: Authenticator;
  tokens: TokenProvider;
  logger: Logger;
  /** One short sentence telling a client where the account's owner grants access (URL or command). */
  consentHint(account: ResolvedAccount): string;
  /** Prometheus instrumentation (src/metrics); absent: nothing is counted. */
  metrics?: SessionMetrics;
  /** The upstreams' known extension lists (SMTP EHLO, POP3 CAPA); absent: the fronts' fixed lists. */
  capabilities?: CapabilitySource;
  /** Warm upstream connections for logins (./upstream-pool.ts); absent: every login connects anew. */
  upstreamPool?: UpstreamPool;
  /** Microsoft Graph sending for connections with `send: graph` or `auto`; absent: SMTP relay only. */
  graph?: GraphSending;
  /** The message content all Graph-mode SMTP sessions may hold at once; absent: no overall bound. */
  messageBudget?: MessageBudget;
}

/** Which SMTP logins send through Microsoft Graph, and the sender of one logged-in account. */
export interface GraphSending {
  /** The way this account's next SMTP login sends (`send: auto` remembers an SMTP AUTH refusal). */
  route(account: ResolvedAccount): Promise<'smtp' | 'graph'>;
  /** Exchange refused SMTP AUTH for this mailbox (`535 5.7.139`): Graph from now on. */
  switchToGraph(account: ResolvedAccount, reply: string): Promise<void>;
  createSender(account: ResolvedAccount): MessageSender;
}

/** A listening protocol front (IMAP, SMTP, or the HTTP pages). */
export interface ProxyServer {
  /** Starts listening on the configured host/port (port 0 picks a free one). */
  listen(): Promise<{ host: string; port: number }>;
  /**
   * Stops accepting and closes sessions that have not logged in. Relayed sessions are ended too, at
   * once or, with `graceMs`, once that time has passed (those that end by themselves first just end).
   */
  close(options?: CloseOptions): Promise<void>;
}

export interface CloseOptions {
  /** How long relayed sessions may go on after the listener stopped accepting (default 0). */
  graceMs?: number;
}

// ---------------------------------------------------------------------------------------------
// The pieces shared by every protocol front (see ./index.ts).
// ---------------------------------------------------------------------------------------------

/** What a session factory learns about a freshly accepted connection. */
export interface ConnectionContext {
  listener: ListenerConfig;
  /** True when the socket is already TLS (implicit-TLS listener). */
  secure: boolean;
  /** Local TLS context for STARTTLS (present when the listener has a cert, i.e. tls is not 'none'). */
  secureContext: SecureContext | undefined;
  remoteAddress: string;
  remotePort: number;
  /** Short random id for log lines. */
  id: string;
  /**
   * The session calls this once its client has logged in: it runs on through a graceful shutdown like
   * a relayed session, and (unless `stillCounted`: a session that may hold a whole message in
   * memory) no longer counts against the per-address cap for connections not logged in.
   */
  loggedIn?: (options?: { stillCounted?: boolean }) => void;
}

/** One client connection as seen by the listener: it only needs to be able to end it. */
export interface ProxySession {
  /** Ends the session (a protocol goodbye where sensible, then the socket). Idempotent. */
  close(reason: 'shutdown'): void;
  /** Resolves once both legs are closed and the session log line is written. Never rejects. */
  readonly closed: Promise<void>;
}

export type SessionFactory = (socket: Socket, context: ConnectionContext) => ProxySession;

/** How a session ended, for its one log line. */
export type SessionOutcome =
  | 'relayed'
  /** Logged in and ran its mail transactions itself (SMTP through Graph); see messagesSent/Refused. */
  | 'delivered'
  | 'client-quit'
  | 'client-closed'
  | 'timeout'
  | 'limit'
  | 'protocol-error'
  | 'shutdown'
  | ProxyErrorCode
  | 'error';

/** Fields of the one log line every session writes at its end (never a password or token). */
export interface SessionRecord {
  protocol: 'imap' | 'smtp' | 'pop3';
  session: string;
  client: string;
  username?: string;
  account?: string;
  upstream?: string;
  /** Bytes received from the client / sent to the client (whole session, both phases). */
  bytesFromClient: number;
  bytesToClient: number;
  durationMs: number;
  outcome: SessionOutcome;
  /** Short reason for a failure (safe text, e.g. the ProxyError message). */
  reason?: string;
  /** Sessions that send messages themselves (outcome `delivered`): messages accepted by the sender. */
  messagesSent?: number;
  /** ... and messages the sender refused or could not send (any outcome but `sent`). */
  messagesRefused?: number;
}

// ---------------------------------------------------------------------------------------------
// Added for the Prometheus metrics (src/metrics/): what the protocol fronts report. No user names.
// ---------------------------------------------------------------------------------------------

/** A login's result for metrics: 'ok' or the ProxyError code it failed with. */
export type LoginMetricResult = 'ok' | ProxyErrorCode;

/** What the protocol fronts report; implemented by src/metrics/metrics.ts. Must never throw. */
export interface SessionMetrics {
  /** A client connection was accepted (the active-sessions gauge goes up). */
  sessionStarted(protocol: SessionRecord['protocol']): void;
  /** The session's end record (the one log line): active gauge down, session and byte counters. */
  sessionEnded(record: SessionRecord): void;
  /** One whole login (credentials, token, upstream auth and its retry) took `seconds`. */
  loginFinished(protocol: SessionRecord['protocol'], result: LoginMetricResult, seconds: number): void;
  /** A connection closed before any session: not in the listener's allowFrom, or over a cap. */
  connectionRefused?(protocol: SessionRecord['protocol'], reason: RefusalReason): void;
}

export type RefusalReason = 'not-allowed' | 'busy';

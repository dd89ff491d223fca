/**
 * The proxy's Prometheus metrics, in a Registry of their own (not prom-client's global one), so that
 * every daemon or test has independent counters. Labels are protocol, outcome, result, grant and
 * state only: never a user name, mailbox or account id (cardinality, and the scrape is not secret).
 * The instrumented code sees only the small SessionMetrics / TokenMetrics interfaces.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AccountStatusState } from '../oauth/account-status.js';
import type { TokenMetrics, TokenRequestGrant, TokenRequestResult } from '../oauth/types.js';
import type {
  LoginMetricResult,
  RefusalReason,
  SessionMetrics,
  SessionRecord,
} from '../proxy/shared/types.js';
import type { SendOutcome } from '../graph/types.js';

export const METRICS_PREFIX = 'xoauth_proxy_';

const PROTOCOLS: readonly SessionRecord['protocol'][] = ['imap', 'smtp', 'pop3'];
const GRANTS: readonly TokenRequestGrant[] = ['refresh_token', 'client_credentials', 'service_account'];
const TOKEN_RESULTS: readonly TokenRequestResult[] = ['ok', 'transient', 'permanent'];
/** Every state `xoauth-proxy status` knows; each is exported (0 when none), so alerts need no `or`. */
export const ACCOUNT_STATES: readonly AccountStatusState[] = [
  'active',
  'failing',
  'needs-consent',
  'no-grant',
  'app-only',
  'service-account',
  'unreadable',
];
/** Seconds; a login is two or three network round trips, a slow token endpoint can take many. */
const LOGIN_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Where the accounts gauge reads the account states at scrape time (TokenManager.status()). */
export type AccountStateSource = () => Promise<ReadonlyArray<{ state: AccountStatusState }>>;

export interface MetricsOptions {
  /** prom-client's process and Node.js metrics (standard names, no prefix); default true. */
  defaultMetrics?: boolean;
}

export class Metrics implements SessionMetrics, TokenMetrics {
  readonly registry = new Registry();
  readonly #sessions: Counter<'protocol' | 'outcome'>;
  readonly #bytes: Counter<'protocol' | 'direction'>;
  readonly #active: Gauge<'protocol'>;
  readonly #logins: Histogram<'protocol' | 'result'>;
  readonly #tokenRequests: Counter<'grant' | 'result'>;
  readonly #certificateExpiry: Gauge<'connection'>;
  readonly #refused: Counter<'protocol' | 'reason'>;
  readonly #graphMessages: Histogram<'result'>;
  readonly #messages: Counter<'result'>;
  #accountSource: AccountStateSource | undefined;

  constructor(options: MetricsOptions = {}) {
    const registers = [this.registry];
    this.#sessions = new Counter({
      name: `${METRICS_PREFIX}sessions_total`,
      help: 'Client sessions that ended, by protocol and outcome (as in the session-end log line).',
      labelNames: ['protocol', 'outcome'],
      registers,
    });
    this.#bytes = new Counter({
      name: `${METRICS_PREFIX}relayed_bytes_total`,
      help: 'Bytes received from (from_client) and sent to (to_client) clients, counted when a session ends.',
      labelNames: ['protocol', 'direction'],
      registers,
    });
    this.#refused = new Counter({
      name: `${METRICS_PREFIX}connections_refused_total`,
      help: 'Connections closed before a greeting: not_allowed (outside the listener allowFrom) or busy (a connection cap).',
      labelNames: ['protocol', 'reason'],
      registers,
    });
    this.#messages = new Counter({
      name: `${METRICS_PREFIX}smtp_messages_total`,
      help: 'Messages SMTP sessions handed to a sender of their own (Graph mode): sent, or refused (any other outcome).',
      labelNames: ['result'],
      registers,
    });
    this.#active = new Gauge({
      name: `${METRICS_PREFIX}active_sessions`,
      help: 'Client sessions open now (before login and relaying).',
      labelNames: ['protocol'],
      registers,
    });
    this.#logins = new Histogram({
      name: `${METRICS_PREFIX}login_duration_seconds`,
      help: 'Duration of whole logins (local check, access token, upstream authentication), by result.',
      labelNames: ['protocol', 'result'],
      buckets: LOGIN_BUCKETS,
      registers,
    });
    this.#tokenRequests = new Counter({
      name: `${METRICS_PREFIX}token_requests_total`,
      help: 'Requests to OAuth token endpoints, by grant and result (ok, transient or permanent failure).',
      labelNames: ['grant', 'result'],
      registers,
    });
    this.#graphMessages = new Histogram({
      name: `${METRICS_PREFIX}graph_send_duration_seconds`,
      help: 'Messages the proxy sent through Microsoft Graph (send: graph or auto), by result, and how long each took.',
      labelNames: ['result'],
      buckets: GRAPH_BUCKETS,
      registers,
    });
    const source = (): AccountStateSource | undefined => this.#accountSource;
    new Gauge({
      name: `${METRICS_PREFIX}accounts`,
      help: 'Accounts by state, as `xoauth-proxy status` shows them (read at scrape time).',
      labelNames: ['state'],
      registers,
      async collect() {
        const read = source();
        this.reset();
        if (!read) return;
        const counts = new Map<AccountStatusState, number>(ACCOUNT_STATES.map((s) => [s, 0]));
        // An unreadable store shows as no accounts gauge at all rather than a failed scrape.
        let accounts: Awaited<ReturnType<AccountStateSource>>;
        try {
          accounts = await read();
        } catch {
          return;
        }
        for (const account of accounts) counts.set(account.state, (counts.get(account.state) ?? 0) + 1);
        for (const [state, count] of counts) this.set({ state }, count);
      },
    });

    this.#certificateExpiry = new Gauge({
      name: `${METRICS_PREFIX}client_certificate_expiry_timestamp_seconds`,
      help: 'When the client certificate of a connection expires (Unix time), per connection name.',
      labelNames: ['connection'],
      registers,
    });

    // Zero series up front, so rate() and alerts work before the first event.
    for (const protocol of PROTOCOLS) {
      this.#active.set({ protocol }, 0);
      this.#bytes.inc({ protocol, direction: 'from_client' }, 0);
      this.#bytes.inc({ protocol, direction: 'to_client' }, 0);
      for (const reason of ['not_allowed', 'busy']) this.#refused.inc({ protocol, reason }, 0);
    }
    for (const grant of GRANTS) {
      for (const result of TOKEN_RESULTS) this.#tokenRequests.inc({ grant, result }, 0);
    }
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Where the accounts gauge reads the states (the daemon passes `() => tokens.status()`). */
  trackAccounts(source: AccountStateSource): void {
    this.#accountSource = source;
  }

  /** Connections that authenticate with a certificate: its expiry, for an alert well before the day. */
  trackCertificates(certificates: ReadonlyArray<{ connection: string; notAfter: number }>): void {
    this.#certificateExpiry.reset();
    for (const { connection, notAfter } of certificates) {
      this.#certificateExpiry.set({ connection }, Math.floor(notAfter / 1000));
    }
  }

  /** The Content-Type of `scrape()` (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the Prometheus text format. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  sessionStarted(protocol: SessionRecord['protocol']): void {
    this.#active.inc({ protocol });
  }

  sessionEnded(record: SessionRecord): void {
    const protocol = record.protocol;
    this.#active.dec({ protocol });
    this.#sessions.inc({ protocol, outcome: record.outcome });
    this.#bytes.inc({ protocol, direction: 'from_client' }, nonNegative(record.bytesFromClient));
    this.#bytes.inc({ protocol, direction: 'to_client' }, nonNegative(record.bytesToClient));
    if (record.messagesSent !== undefined)
      this.#messages.inc({ result: 'sent' }, nonNegative(record.messagesSent));
    if (record.messagesRefused !== undefined)
      this.#messages.inc({ result: 'refused' }, nonNegative(record.messagesRefused));
  }

  connectionRefused(protocol: SessionRecord['protocol'], reason: RefusalReason): void {
    this.#refused.inc({ protocol, reason: reason === 'not-allowed' ? 'not_allowed' : 'busy' });
  }

  loginFinished(protocol: SessionRecord['protocol'], result: LoginMetricResult, seconds: number): void {
    this.#logins.observe({ protocol, result }, nonNegative(seconds));
  }

  tokenRequest(grant: TokenRequestGrant, result: TokenRequestResult): void {
    this.#tokenRequests.inc({ grant, result });
  }

  /** One message handed to Microsoft Graph; `result` is the SendOutcome kind (`sent`, `temporary`, ...). */
  graphMessage(result: SendOutcome['kind'], seconds: number): void {
    this.#graphMessages.observe({ result: result.replace(/-/g, '_') }, nonNegative(seconds));
  }
}

/** From a small message (a fraction of a second) to a large one in upload sessions (tens of seconds). */
const GRAPH_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** prom-client throws on a negative counter increment; a bookkeeping slip must not end a session. */
function nonNegative(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}

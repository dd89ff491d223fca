/**
 * The configuration as the rest of the program sees it: validated, env/file secrets expanded, provider
 * defaults merged in. Only `src/config/` knows the raw YAML shape.
 */
import type { KeyObject } from 'node:crypto';
import type { SecureVersion } from 'node:tls';

export type TlsMode = 'none' | 'starttls' | 'implicit';
export type Protocol = 'imap' | 'smtp' | 'pop3' | 'http';

export interface ListenerConfig {
  host: string;
  port: number;
  tls: TlsMode;
  /** PEM contents (already read from the file named in the YAML). Required unless tls is 'none'. */
  cert?: string;
  key?: string;
  /** Lowest TLS version for the local (client-facing) side; 'TLSv1' allows old devices. */
  minVersion?: SecureVersion;
  /** Who may connect (addresses and CIDR ranges); absent: anyone who can reach the port. */
  allowFrom?: string[];
  /**
   * Mail listeners behind a load balancer: each connection starts with a PROXY protocol header (v1 or
   * v2) naming the real client, accepted only from these balancers. Absent: no PROXY protocol.
   */
  proxyProtocol?: { trustedProxies: string[] };
}

export interface UpstreamServer {
  host: string;
  port: number;
  /** Upstream TLS is never optional: implicit TLS or STARTTLS, certificate always verified. */
  tls: 'implicit' | 'starttls';
}

export type ProviderKind = 'google' | 'microsoft' | 'custom';
export type GrantType = 'authorization_code' | 'device_code' | 'client_credentials' | 'service_account';

/** A Google service account key (the JSON file Google issues), parsed and checked at load time. */
export interface ServiceAccountKey {
  /** The service account's address: the `iss` of every assertion. */
  clientEmail: string;
  privateKey: KeyObject;
  /** The key's id (`kid`), so Google knows which of the account's keys signed. */
  privateKeyId?: string;
}

/** A certificate credential: the token endpoint gets a signed client assertion instead of a secret. */
export interface ClientCertificate {
  privateKey: KeyObject;
  /** base64url SHA-256 of the certificate's DER: the assertion's `x5t#S256` header. */
  thumbprintS256: string;
  algorithm: 'RS256' | 'PS256';
  /** Epoch ms of the certificate's validity. */
  notBefore: number;
  notAfter: number;
  subject: string;
  /** The certificate file as configured, for messages. */
  certFile: string;
}
export type SaslMechanism = 'xoauth2' | 'oauthbearer';

export interface ConnectionConfig {
  name: string;
  provider: ProviderKind;
  clientId: string;
  /** Absent for public clients: then no client_secret is sent at all. */
  clientSecret?: string;
  /** Instead of a client secret (Microsoft): a signed client assertion authenticates the client. */
  clientCertificate?: ClientCertificate;
  /** grant service_account (Google domain-wide delegation). */
  serviceAccount?: ServiceAccountKey;
  projectId?: string;
  tenantId?: string;
  grant: GrantType;
  authorizeUrl: string;
  tokenUrl: string;
  /** RFC 8628 device authorization endpoint (Microsoft). */
  deviceCodeUrl?: string;
  /** Where to read the consenting identity when the token response has no id_token email. */
  userinfoUrl?: string;
  scopes: string[];
  /** Extra query parameters for the authorization URL (Google: access_type=offline, prompt=consent). */
  authorizeParams: Record<string, string>;
  imap?: UpstreamServer;
  smtp?: UpstreamServer;
  pop3?: UpstreamServer;
  sasl: SaslMechanism;
  /** Extra trusted CA (PEM contents) for upstream TLS, added to the system CAs. */
  ca?: string;
  /** Identities besides the mailbox itself allowed to consent (delegates of a shared mailbox). */
  allowedIdentities: string[];
  /** How SMTP submissions of this connection's accounts leave the proxy (absent: 'smtp'). */
  send?: SendMode;
  /** Microsoft Graph sending; present when `send` is 'graph' or 'auto'. */
  graph?: GraphSettings;
}

/**
 * 'smtp': relayed to the connection's SMTP server; 'graph': the proxy ends the SMTP transaction itself
 * and sends through Microsoft Graph; 'auto': SMTP, and Graph for a mailbox whose SMTP AUTH is off.
 */
export type SendMode = 'smtp' | 'graph' | 'auto';

export interface GraphSettings {
  /** API base including the version, e.g. https://graph.microsoft.com/v1.0. */
  url: string;
  /** Scopes of the Graph token request (one resource per request; never mixed with the mail scopes). */
  scopes: string[];
  saveToSentItems: boolean;
}

export interface AccountConfig {
  /** What the legacy client types; may be a domain pattern such as `*@example.com`. */
  username: string;
  /** Upstream mailbox; defaults to the username (for a pattern: the typed username). */
  email?: string;
  connection: string;
  /** scrypt hash from `xoauth-proxy hash-password`; never plain text. */
  password?: string;
}

/** An account after a concrete username was matched against the config. */
export interface ResolvedAccount {
  /** Key for tokens and app passwords: the upstream mailbox address, lower-cased. */
  id: string;
  username: string;
  email: string;
  connection: ConnectionConfig;
  passwordHash?: string;
  /** The config entry's username (equal to `username`, or the pattern it matched). */
  entry: string;
}

export interface LimitSettings {
  maxLineLength: number;
  maxLiteralSize: number;
  maxCommandsBeforeLogin: number;
  maxFailedLoginsPerConnection: number;
  preAuthIdleTimeoutMs: number;
  /**
   * Idle time allowed after login in the sessions the proxy runs itself (SMTP through Microsoft Graph);
   * relayed sessions have no idle timer.
   */
  postLoginIdleTimeoutMs: number;
  upstreamConnectTimeoutMs: number;
  /** SMTP SIZE advertised to clients (bytes). */
  smtpMaxMessageSize: number;
  /**
   * Message content (bytes) all SMTP sessions sending through Microsoft Graph hold at once; past it a
   * message is refused with 452 4.3.1. At least smtpMaxMessageSize.
   */
  messageMemory: number;
  /** Client connections per listener, logged in or not; more are refused with a "too busy" reply. */
  maxConnections: number;
  /** Connections not yet logged in per client address (IPv6 by /64) per listener. */
  maxConnectionsPerAddress: number;
  /** From connect to a successful login at most this long, however chatty the client. */
  loginDeadlineMs: number;
}

export interface LoginLimiterSettings {
  /** Failures (per address, username, or both) before delays start; a username is never locked. */
  freeFailures: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Failures of one username from one address within `windowMs` after which that pair is locked. */
  lockAfter: number;
  /** Failures from one address (any usernames) within `windowMs` after which the address is locked. */
  addressLockAfter: number;
  lockMs: number;
  windowMs: number;
}

export interface Settings {
  /** Refresh an access token when less than this is left (Microsoft HVE rejects tokens near expiry). */
  refreshMarginMs: number;
  /** Every account with a refresh token is refreshed at least this often. */
  keepAliveIntervalMs: number;
  tokenRequestTimeoutMs: number;
  credentialCacheMs: number;
  /** On SIGTERM/SIGINT, how long relayed sessions may continue before they are closed. */
  shutdownGraceMs: number;
  limits: LimitSettings;
  loginLimiter: LoginLimiterSettings;
  /** Warm upstream connections for logins (absent in hand-built configs: the defaults). */
  upstreamPool?: UpstreamPoolSettings;
}

export interface UpstreamPoolSettings {
  /** false: every login connects anew and no connection is opened ahead of one. */
  enabled: boolean;
  /** Most warm connections per upstream (protocol, host, port, TLS, CA, SMTP EHLO name). */
  maxPerHost: number;
  /** A warm connection is closed unused after this long (keep it under the servers' pre-login timeout). */
  maxIdleMs: number;
}

export interface HttpSettings {
  /** Public base URL of the HTTP listener; redirect URIs and consent links derive from it. */
  publicUrl?: string;
  /** scrypt hash of the admin password, or a token; no /admin at all without one. */
  adminPassword?: string;
  /** What a client that needs consent is told: the admin page or a consent-link command. */
  consentHint: 'admin' | 'command';
  /** CIDRs of reverse proxies whose X-Forwarded-For is believed; absent or empty: none. */
  trustedProxies?: string[];
  /** GET /metrics (Prometheus) on the HTTP listener; absent means true. */
  metrics?: boolean;
}

/** Where grants, app passwords and consent links are kept: `store.kind`. */
export type StoreSettings = SqliteStoreSettings | PostgresStoreSettings;

export interface SqliteStoreSettings {
  /** Absent means sqlite (the embedded default). */
  kind?: 'sqlite';
  /** SQLite file for tokens and app passwords (mode 0600). */
  path: string;
  /** Key file created with mode 0600 on first start unless XOAUTH_PROXY_KEY is set. */
  keyFile: string;
}

/** One PostgreSQL database shared by several proxy instances. */
export interface PostgresStoreSettings {
  kind: 'postgres';
  /** postgres://user:password@host:5432/db?sslmode=verify-full (from `url` or `urlFile`). */
  url: string;
  /** The same key on every instance; never created automatically for a shared store. */
  keyFile: string;
  /** How long a refresh lease runs unless renewed (by the database's clock). */
  refreshLeaseMs: number;
  /** Connections per instance. */
  poolMax: number;
  /** A connection attempt or query that takes longer fails (the store is then unavailable). */
  timeoutMs: number;
}

export interface NotifySettings {
  webhook?: string;
  command?: string;
  /** At most one notification per account and event kind in this window. */
  minIntervalMs: number;
}

export interface Config {
  /** Absolute path of the YAML file, for messages. */
  file: string;
  listen: Record<Protocol, ListenerConfig[]>;
  store: StoreSettings;
  connections: Map<string, ConnectionConfig>;
  accounts: AccountConfig[];
  settings: Settings;
  http: HttpSettings;
  notify: NotifySettings;
}

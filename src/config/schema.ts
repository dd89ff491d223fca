/**
 * The raw YAML shape, as zod 4 schemas. Strict objects everywhere: a misspelt key is an error, never
 * silently ignored. Defaults for settings live in ./defaults.ts (one place, also used by the docs and the
 * JSON Schema); this file only validates shapes and single values. Rules that span several fields
 * (provider vs grant, account -> connection, ...) live in ./build.ts.
 */
import { z } from 'zod';
import { DURATION_PATTERN, parseDuration } from './duration.js';
import { DEFAULTS } from './defaults.js';
import { formatDuration } from './duration.js';

const DURATION_ERROR = 'must be a duration such as "30s", "10m", "6h", "1d" or a number of milliseconds';

const duration = (description: string, defaultMs: number) =>
  z
    .union(
      [
        z.number({ error: DURATION_ERROR }).int(DURATION_ERROR).nonnegative(DURATION_ERROR),
        z.string({ error: DURATION_ERROR }).regex(new RegExp(DURATION_PATTERN), DURATION_ERROR),
      ],
      { error: DURATION_ERROR },
    )
    .meta({ description, default: formatDuration(defaultMs) })
    .transform((value) => parseDuration(value) as number)
    .optional();

const count = (description: string, defaultValue: number) =>
  z
    .number({ error: 'must be a whole number' })
    .int({ error: 'must be a whole number' })
    .positive({ error: 'must be greater than 0' })
    .optional()
    .meta({ description, default: defaultValue });

const PORT_ERROR = 'must be a port number (1-65535)';
const portNumber = (min: number, error: string) =>
  z
    .union([z.number({ error }).int(error), z.string({ error }).regex(/^\d+$/, error)], { error })
    .transform(Number)
    .pipe(z.number().int().min(min, error).max(65535, error));
const port = portNumber(1, PORT_ERROR);
/** Listeners may use 0: the system picks a free port (tests; the banner shows the real one). */
const listenPort = portNumber(0, 'must be a port number (0-65535; 0 picks a free port)');

const nonEmpty = (what: string) =>
  z.string({ error: `must be ${what}, as text (put quotes around a number)` }).min(1, 'must not be empty');

export const listenerSchema = z
  .strictObject({
    host: nonEmpty('a host name or IP address').default('127.0.0.1').meta({
      description: 'Address to listen on. Loopback by default; use 0.0.0.0 only behind a firewall.',
    }),
    port: listenPort.meta({ description: 'TCP port (0: any free port).' }),
    tls: z
      .enum(['none', 'starttls', 'implicit'])
      .default('none')
      .meta({ description: 'Client-facing TLS: none, starttls (not for http) or implicit.' }),
    cert: z
      .string()
      .optional()
      .meta({ description: 'PEM certificate chain file (needed for starttls/implicit).' }),
    key: z.string().optional().meta({ description: 'PEM private key file (needed for starttls/implicit).' }),
    minVersion: z
      .enum(['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'])
      .optional()
      .meta({ description: 'Lowest TLS version accepted from clients; TLSv1 allows old devices.' }),
    allowFrom: z
      .array(z.string({ error: 'must be an IP address or CIDR range, as text' }))
      .optional()
      .meta({
        description:
          'Client addresses or CIDR ranges (IPv4 and IPv6) that may connect; others are closed before the greeting. Default: anyone.',
      }),
  })
  .meta({ description: 'One listening socket.' });

/** IMAP, SMTP and POP3 listeners may sit behind a TCP load balancer; HTTP has trustedProxies instead. */
export const mailListenerSchema = listenerSchema
  .extend({
    proxyProtocol: z.boolean().default(false).meta({
      description:
        'Every connection starts with a PROXY protocol header (v1 or v2, e.g. HAProxy send-proxy-v2) naming the real client; only from trustedProxies.',
    }),
    trustedProxies: z
      .array(z.string({ error: 'must be an IP address or CIDR range, as text' }))
      .optional()
      .meta({
        description:
          'Load balancers (addresses or CIDR ranges) that may connect and send the PROXY header; required with proxyProtocol. Others are closed at once.',
      }),
  })
  .meta({ description: 'One listening socket for a mail protocol.' });

const listeners = (what: string, schema: typeof listenerSchema | typeof mailListenerSchema) =>
  z
    .array(schema)
    .default([])
    .meta({ description: `${what} listeners.` });

const upstreamSchema = z
  .strictObject({
    host: nonEmpty('a host name').optional(),
    port: port.optional(),
    tls: z
      .enum(['implicit', 'starttls'])
      .optional()
      .meta({ description: 'Upstream TLS is never optional; the certificate is always verified.' }),
  })
  .meta({ description: 'Upstream mail server; each field overrides the provider preset.' });

export const connectionSchema = z.strictObject({
  name: z
    .string({ error: 'must be a name' })
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
      'must start with a letter or digit and use only letters, digits, ".", "_" and "-"',
    )
    .meta({ description: 'Name that accounts refer to.' }),
  provider: z
    .enum(['google', 'microsoft', 'azure', 'custom'])
    .meta({ description: 'Built-in preset (google, microsoft; azure is an alias of microsoft) or custom.' }),
  clientId: nonEmpty('the OAuth client id').meta({ description: 'OAuth client (application) id.' }),
  clientSecret: z
    .string()
    .optional()
    .meta({ description: 'OAuth client secret; leave out for public clients.' }),
  clientSecretFile: z
    .string()
    .optional()
    .meta({ description: 'File holding the client secret (trailing newline ignored).' }),
  projectId: z
    .string()
    .optional()
    .meta({ description: 'Google Cloud project id (Google only; informational).' }),
  tenantId: z.string().optional().meta({
    description: 'Microsoft tenant: GUID, domain, common, organizations or consumers. Default common.',
  }),
  grant: z
    .enum(['authorization_code', 'device_code', 'client_credentials', 'service_account'])
    .optional()
    .meta({
      description: 'OAuth grant (service_account: Google domain-wide delegation).',
      default: 'authorization_code',
    }),
  serviceAccountKeyFile: z.string().optional().meta({
    description: 'grant service_account: the JSON key file of the Google service account.',
  }),
  serviceAccountKey: z.string().optional().meta({
    description: 'grant service_account: the JSON key itself (e.g. "${GOOGLE_SA_KEY}").',
  }),
  clientCertificate: z
    .strictObject({
      certFile: nonEmpty('a file name').meta({ description: 'PEM certificate registered with the app.' }),
      keyFile: nonEmpty('a file name').meta({ description: 'PEM private key of the certificate.' }),
      keyPassphraseFile: z
        .string()
        .optional()
        .meta({ description: 'File holding the passphrase of an encrypted key.' }),
      keyPassphrase: z
        .string()
        .optional()
        .meta({ description: 'Passphrase of an encrypted key (e.g. "${KEY_PASSPHRASE}").' }),
      algorithm: z
        .enum(['PS256', 'RS256'])
        .optional()
        .meta({ description: 'Signature algorithm of the client assertion.', default: 'PS256' }),
    })
    .optional()
    .meta({ description: 'Certificate credential instead of a client secret (Microsoft).' }),
  cloud: z
    .enum(['global', 'usgov', 'china'])
    .optional()
    .meta({ description: 'Microsoft national cloud.', default: 'global' }),
  authorizeUrl: z.string().optional().meta({ description: 'Authorization endpoint (overrides the preset).' }),
  tokenUrl: z.string().optional().meta({ description: 'Token endpoint (overrides the preset).' }),
  deviceCodeUrl: z.string().optional().meta({ description: 'Device authorization endpoint (RFC 8628).' }),
  userinfoUrl: z.string().optional().meta({ description: 'OIDC userinfo endpoint, to learn who consented.' }),
  scopes: z
    .array(nonEmpty('a scope'))
    .min(1, 'must list at least one scope')
    .optional()
    .meta({ description: 'Scopes to request (replace the preset list).' }),
  authorizeParams: z
    .record(z.string(), z.string())
    .optional()
    .meta({ description: 'Extra authorization URL parameters (merged over the preset).' }),
  imap: upstreamSchema.optional(),
  smtp: upstreamSchema.optional(),
  pop3: upstreamSchema.optional(),
  sasl: z
    .enum(['xoauth2', 'oauthbearer'])
    .optional()
    .meta({ description: 'Upstream SASL mechanism.', default: 'xoauth2' }),
  ca: z.string().optional().meta({ description: 'Extra trusted CA certificate (PEM) for upstream TLS.' }),
  caFile: z.string().optional().meta({ description: 'File with extra trusted CA certificates (PEM).' }),
  allowedIdentities: z
    .array(z.email({ error: 'must be an email address' }))
    .optional()
    .meta({ description: 'Identities besides the mailbox itself allowed to consent (delegates).' }),
  send: z
    .enum(['smtp', 'graph', 'auto'])
    .optional()
    .meta({
      description:
        'How SMTP submissions are sent: smtp (relay to the SMTP server), graph (Microsoft Graph sendMail), ' +
        'or auto (SMTP, and Graph for a mailbox whose SMTP AUTH is disabled).',
      default: 'smtp',
    }),
  graphUrl: z.string().optional().meta({
    description: 'Graph API base including the version (default from the Microsoft cloud).',
  }),
  graphScopes: z
    .array(nonEmpty('a scope'))
    .min(1, 'must list at least one scope')
    .optional()
    .meta({ description: 'Scopes of the Graph token (default the Mail.Send scope of the cloud).' }),
  saveToSentItems: z
    .boolean()
    .optional()
    .meta({ description: 'Graph sending: keep a copy in Sent Items.', default: true }),
});

export const accountSchema = z.strictObject({
  username: nonEmpty('the login name').meta({
    description: 'What the mail client types as user name; "*@example.com" serves a whole domain.',
  }),
  email: z
    .email({ error: 'must be an email address' })
    .optional()
    .meta({ description: 'Upstream mailbox; defaults to the username.' }),
  connection: nonEmpty('a connection name').meta({ description: 'Name of the connection to use.' }),
  password: z
    .string()
    .optional()
    .meta({ description: 'scrypt hash from `xoauth-proxy hash-password` (never plain text).' }),
});

const d = DEFAULTS;

export const settingsSchema = z.strictObject({
  refreshMargin: duration('Refresh an access token when less than this is left.', d.settings.refreshMarginMs),
  keepAliveInterval: duration(
    'Refresh every account with a refresh token at least this often.',
    d.settings.keepAliveIntervalMs,
  ),
  tokenRequestTimeout: duration('Timeout of one token endpoint request.', d.settings.tokenRequestTimeoutMs),
  credentialCache: duration(
    'How long a verified local password is remembered (0 disables the cache).',
    d.settings.credentialCacheMs,
  ),
  shutdownGrace: duration(
    'On SIGTERM/SIGINT, how long relayed sessions may go on before they are closed (0 closes them at once).',
    d.settings.shutdownGraceMs,
  ),
  limits: z
    .strictObject({
      maxLineLength: count(
        'Longest command line accepted from a client (bytes).',
        d.settings.limits.maxLineLength,
      ),
      maxLiteralSize: count(
        'Largest IMAP literal accepted before login (bytes).',
        d.settings.limits.maxLiteralSize,
      ),
      maxCommandsBeforeLogin: count(
        'Commands a client may send before logging in.',
        d.settings.limits.maxCommandsBeforeLogin,
      ),
      maxFailedLoginsPerConnection: count(
        'Failed logins after which the connection is closed.',
        d.settings.limits.maxFailedLoginsPerConnection,
      ),
      preAuthIdleTimeout: duration('Idle time allowed before login.', d.settings.limits.preAuthIdleTimeoutMs),
      postLoginIdleTimeout: duration(
        'Idle time allowed after login where the proxy runs the session itself (SMTP sending through Microsoft Graph).',
        d.settings.limits.postLoginIdleTimeoutMs,
      ),
      upstreamConnectTimeout: duration(
        'Timeout for connecting and logging in upstream.',
        d.settings.limits.upstreamConnectTimeoutMs,
      ),
      smtpMaxMessageSize: count(
        'SMTP SIZE advertised to clients (bytes).',
        d.settings.limits.smtpMaxMessageSize,
      ),
      messageMemory: count(
        'Bytes of message content all SMTP sessions sending through Microsoft Graph may hold at once; a message that would pass it gets 452 4.3.1 (try again later).',
        d.settings.limits.messageMemory,
      ),
      maxConnections: count(
        'Client connections per listener (logged in or not); more are refused as too busy.',
        d.settings.limits.maxConnections,
      ),
      maxConnectionsPerAddress: count(
        'Connections not yet logged in per client address (IPv6: per /64) per listener.',
        d.settings.limits.maxConnectionsPerAddress,
      ),
      loginDeadline: duration(
        'Longest time from connect to a successful login, however active the client.',
        d.settings.limits.loginDeadlineMs,
      ),
    })
    .optional(),
  upstreamPool: z
    .strictObject({
      enabled: z.boolean().optional().meta({
        description: 'Keep upstream connections connected, TLS-verified and greeted ahead of logins.',
        default: d.settings.upstreamPool.enabled,
      }),
      maxPerHost: count(
        'Most warm connections per upstream server (and, for SMTP, per client EHLO name).',
        d.settings.upstreamPool.maxPerHost,
      ),
      maxIdle: duration(
        "A warm connection unused this long is closed; keep it under the server's pre-login timeout.",
        d.settings.upstreamPool.maxIdleMs,
      ),
    })
    .optional(),
  loginLimiter: z
    .strictObject({
      freeFailures: z.number().int().nonnegative().optional().meta({
        description: 'Failures (per address, username, or both) before delays start.',
        default: d.settings.loginLimiter.freeFailures,
      }),
      baseDelay: duration(
        'First delay after the free failures; doubles each time.',
        d.settings.loginLimiter.baseDelayMs,
      ),
      maxDelay: duration('Longest delay.', d.settings.loginLimiter.maxDelayMs),
      lockAfter: count(
        'Failures of one username from one address within the window after which that pair is locked.',
        d.settings.loginLimiter.lockAfter,
      ),
      addressLockAfter: count(
        'Failures from one address (any usernames) within the window after which the address is locked.',
        d.settings.loginLimiter.addressLockAfter,
      ),
      lockDuration: duration('How long a lock lasts.', d.settings.loginLimiter.lockMs),
      window: duration('Failures older than this are forgotten.', d.settings.loginLimiter.windowMs),
    })
    .optional(),
});

export const httpSchema = z.strictObject({
  publicUrl: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL such as https://mail-proxy.example.com' })
    .optional()
    .meta({ description: 'Public base URL of the HTTP listener (redirect URIs and consent links).' }),
  adminPassword: z
    .string()
    .optional()
    .meta({ description: 'scrypt hash of the admin password; no /admin pages without one.' }),
  adminPasswordFile: z.string().optional().meta({ description: 'File holding the admin password hash.' }),
  consentHint: z
    .enum(['admin', 'command'])
    .optional()
    .meta({ description: 'What a client needing consent is told; default admin when adminPassword is set.' }),
  trustedProxies: z.array(z.string()).optional().meta({
    description:
      'Reverse proxies (CIDR, IPv4 or IPv6) whose X-Forwarded-For names the client address; from other peers the header is ignored.',
    default: [],
  }),
  metrics: z.boolean().optional().meta({
    description: 'Serve Prometheus metrics at GET /metrics on the HTTP listener (no account names in it).',
    default: d.http.metrics,
  }),
});

export const notifySchema = z.strictObject({
  webhook: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
    .optional()
    .meta({ description: 'URL that receives a JSON POST when an account needs consent.' }),
  command: z.string().optional().meta({ description: 'Command run when an account needs consent.' }),
  minInterval: duration(
    'At most one notification per account and kind in this window.',
    d.notify.minIntervalMs,
  ),
});

export const configSchema = z
  .strictObject({
    listen: z
      .strictObject({
        imap: listeners('IMAP', mailListenerSchema),
        smtp: listeners('SMTP submission', mailListenerSchema),
        pop3: listeners('POP3', mailListenerSchema),
        http: listeners('HTTP (consent and admin pages)', listenerSchema),
      })
      .optional(),
    store: z
      .strictObject({
        kind: z
          .enum(['sqlite', 'postgres'])
          .optional()
          .meta({
            description:
              'sqlite: one embedded file (one instance, plus CLI commands on the same machine). postgres: one ' +
              'database shared by several instances.',
            default: 'sqlite',
          }),
        path: z
          .string()
          .optional()
          .meta({ description: 'SQLite token store, relative to the config file.', default: d.store.path }),
        keyFile: z
          .string()
          .optional()
          .meta({
            description:
              'Encryption key file (0600), relative to the config file. With postgres it must exist (the same ' +
              'key on every instance) unless XOAUTH_PROXY_KEY is set.',
            default: d.store.keyFile,
          }),
        url: z
          .string()
          .optional()
          .meta({
            description:
              'postgres: the database URL, e.g. postgres://proxy@db.example.com:5432/xoauth?sslmode=verify-full ' +
              '(use ${ENV} for the password, or urlFile).',
          }),
        urlFile: z.string().optional().meta({ description: 'postgres: a file holding the URL (mode 0600).' }),
        refreshLease: duration(
          "postgres: how long one instance may hold an account's refresh before another takes over.",
          d.postgres.refreshLeaseMs,
        ),
        pool: z
          .strictObject({
            max: z.number().int().positive().optional().meta({
              description: 'postgres: connections per instance.',
              default: d.postgres.poolMax,
            }),
          })
          .optional(),
        timeout: duration(
          'postgres: a connection or query slower than this fails (logins then get a temporary error).',
          d.postgres.timeoutMs,
        ),
      })
      .optional(),
    connections: z.array(connectionSchema).optional(),
    accounts: z.array(accountSchema).optional(),
    settings: settingsSchema.optional(),
    http: httpSchema.optional(),
    notify: notifySchema.optional(),
  })
  .meta({ title: 'xoauth-proxy configuration' });

export type RawConfig = z.output<typeof configSchema>;
export type RawConnection = z.output<typeof connectionSchema>;
export type RawListener = z.output<typeof listenerSchema>;
export type RawMailListener = z.output<typeof mailListenerSchema>;

/** JSON Schema (draft-07) of the YAML input, for editors (yaml-language-server) and `xoauth-proxy schema`. */
export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(configSchema, { io: 'input', target: 'draft-7' }) as Record<string, unknown>;
}

/**
 * Raw (schema-valid) YAML values -> the `Config` the program uses: provider presets merged, secrets read
 * from files, relative paths resolved, defaults applied, and every rule that spans several fields checked.
 * Problems are collected (not thrown) with their key path; ./load.ts turns paths into line:col.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import {
  GOOGLE_MAIL_SCOPE,
  MICROSOFT_MULTI_TENANTS,
  googlePreset,
  microsoftGraphPreset,
  microsoftPreset,
  type MicrosoftCloud,
  type ProviderPreset,
} from './providers.js';
import { isPasswordHash } from './password-hash.js';
import { parseCidr } from './address-list.js';
import { DEFAULTS, DEFAULT_LISTEN_HOST } from './defaults.js';
import { formatPath } from './errors.js';
import { loadClientCertificate, parseServiceAccountKey } from './key-material.js';
import type { RawConfig, RawConnection, RawMailListener } from './schema.js';
import type {
  AccountConfig,
  Config,
  ConnectionConfig,
  GrantType,
  GraphSettings,
  ListenerConfig,
  Protocol,
  ProviderKind,
  UpstreamServer,
} from './types.js';

export type Path = (string | number)[];

export interface BuildIssue {
  path: Path;
  problem: string;
  fix?: string;
}

export interface BuildContext {
  /** The config file as given (for messages) and its directory (for relative paths). */
  file: string;
  dir: string;
  /** line:col of a path, for messages that point at a second place. */
  locate?: (path: Path) => { line: number; col: number } | undefined;
}

const PROTOCOLS: readonly Protocol[] = ['imap', 'smtp', 'pop3', 'http'];
const MAIL_PROTOCOLS = ['imap', 'smtp', 'pop3'] as const;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
const PATTERN = /^\*@([^\s@*]+\.[^\s@*]+)$/;
// When an override gives a port but no tls: the well-known ports decide, else the preset, else implicit.
const IMPLICIT_TLS_PORTS = new Set([993, 995, 465]);
const STARTTLS_PORTS = new Set([143, 110, 25, 587, 2525]);

const PROVIDER_NAME: Record<ProviderKind, string> = {
  google: 'Google',
  microsoft: 'Microsoft',
  custom: 'custom',
};

export function buildConfig(raw: RawConfig, ctx: BuildContext): { config: Config; issues: BuildIssue[] } {
  const issues: BuildIssue[] = [];
  const report = (path: Path, problem: string, fix?: string) =>
    issues.push(fix === undefined ? { path, problem } : { path, problem, fix });
  const readFile = (path: Path, name: string, what: string): string | undefined => {
    const full = resolve(ctx.dir, name);
    try {
      return readFileSync(full, 'utf8');
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      report(
        path,
        `cannot read ${what} file ${full} (${reason})`,
        'Check the path (relative paths start at the config file) and its permissions.',
      );
      return undefined;
    }
  };
  const where = (path: Path) => {
    const pos = ctx.locate?.(path);
    return pos ? `${formatPath(path)} (line ${pos.line})` : formatPath(path);
  };

  const listen = buildListeners(raw, report, readFile, where);
  const connections = buildConnections(raw.connections ?? [], report, readFile);
  const accounts = buildAccounts(raw.accounts ?? [], connections, report, where);
  const http = buildHttp(raw, report, readFile);

  const s = raw.settings ?? {};
  const dl = DEFAULTS.settings;
  const lim = s.limits ?? {};
  const ll = s.loginLimiter ?? {};
  const up = s.upstreamPool ?? {};
  const maxMessage = lim.smtpMaxMessageSize ?? dl.limits.smtpMaxMessageSize;
  if ((lim.messageMemory ?? dl.limits.messageMemory) < maxMessage) {
    report(
      ['settings', 'limits', lim.messageMemory !== undefined ? 'messageMemory' : 'smtpMaxMessageSize'],
      `messageMemory must hold at least one message of smtpMaxMessageSize (${maxMessage} bytes)`,
      'Raise messageMemory, or lower smtpMaxMessageSize.',
    );
  }
  const config: Config = {
    file: resolve(ctx.file),
    listen,
    store: buildStore(raw, ctx.dir, report, readFile),
    connections,
    accounts,
    settings: {
      refreshMarginMs: s.refreshMargin ?? dl.refreshMarginMs,
      keepAliveIntervalMs: s.keepAliveInterval ?? dl.keepAliveIntervalMs,
      tokenRequestTimeoutMs: s.tokenRequestTimeout ?? dl.tokenRequestTimeoutMs,
      credentialCacheMs: s.credentialCache ?? dl.credentialCacheMs,
      shutdownGraceMs: s.shutdownGrace ?? dl.shutdownGraceMs,
      limits: {
        maxLineLength: lim.maxLineLength ?? dl.limits.maxLineLength,
        maxLiteralSize: lim.maxLiteralSize ?? dl.limits.maxLiteralSize,
        maxCommandsBeforeLogin: lim.maxCommandsBeforeLogin ?? dl.limits.maxCommandsBeforeLogin,
        maxFailedLoginsPerConnection:
          lim.maxFailedLoginsPerConnection ?? dl.limits.maxFailedLoginsPerConnection,
        preAuthIdleTimeoutMs: lim.preAuthIdleTimeout ?? dl.limits.preAuthIdleTimeoutMs,
        postLoginIdleTimeoutMs: lim.postLoginIdleTimeout ?? dl.limits.postLoginIdleTimeoutMs,
        upstreamConnectTimeoutMs: lim.upstreamConnectTimeout ?? dl.limits.upstreamConnectTimeoutMs,
        smtpMaxMessageSize: lim.smtpMaxMessageSize ?? dl.limits.smtpMaxMessageSize,
        messageMemory: lim.messageMemory ?? dl.limits.messageMemory,
        maxConnections: lim.maxConnections ?? dl.limits.maxConnections,
        maxConnectionsPerAddress: lim.maxConnectionsPerAddress ?? dl.limits.maxConnectionsPerAddress,
        loginDeadlineMs: lim.loginDeadline ?? dl.limits.loginDeadlineMs,
      },
      upstreamPool: {
        enabled: up.enabled ?? dl.upstreamPool.enabled,
        maxPerHost: up.maxPerHost ?? dl.upstreamPool.maxPerHost,
        maxIdleMs: up.maxIdle ?? dl.upstreamPool.maxIdleMs,
      },
      loginLimiter: {
        freeFailures: ll.freeFailures ?? dl.loginLimiter.freeFailures,
        baseDelayMs: ll.baseDelay ?? dl.loginLimiter.baseDelayMs,
        maxDelayMs: ll.maxDelay ?? dl.loginLimiter.maxDelayMs,
        lockAfter: ll.lockAfter ?? dl.loginLimiter.lockAfter,
        addressLockAfter: ll.addressLockAfter ?? dl.loginLimiter.addressLockAfter,
        lockMs: ll.lockDuration ?? dl.loginLimiter.lockMs,
        windowMs: ll.window ?? dl.loginLimiter.windowMs,
      },
    },
    http,
    notify: {
      ...(raw.notify?.webhook !== undefined && { webhook: raw.notify.webhook }),
      ...(raw.notify?.command !== undefined && { command: raw.notify.command }),
      minIntervalMs: raw.notify?.minInterval ?? DEFAULTS.notify.minIntervalMs,
    },
  };
  if (config.settings.loginLimiter.maxDelayMs < config.settings.loginLimiter.baseDelayMs) {
    report(
      ['settings', 'loginLimiter', 'maxDelay'],
      'maxDelay is shorter than baseDelay',
      'Make maxDelay at least as long as baseDelay.',
    );
  }
  return { config, issues };
}

type Report = (path: Path, problem: string, fix?: string) => void;
type ReadFile = (path: Path, name: string, what: string) => string | undefined;

function buildListeners(
  raw: RawConfig,
  report: Report,
  readFile: ReadFile,
  where: (path: Path) => string,
): Record<Protocol, ListenerConfig[]> {
  const out: Record<Protocol, ListenerConfig[]> = { imap: [], smtp: [], pop3: [], http: [] };
  const seen = new Map<string, Path>();
  for (const protocol of PROTOCOLS) {
    (raw.listen?.[protocol] ?? []).forEach((l, i) => {
      const path: Path = ['listen', protocol, i];
      const listener: ListenerConfig = { host: l.host ?? DEFAULT_LISTEN_HOST, port: l.port, tls: l.tls };
      if (l.minVersion !== undefined) listener.minVersion = l.minVersion;
      if (l.allowFrom !== undefined) {
        l.allowFrom.forEach((entry, j) => {
          if (!parseCidr(entry))
            report(
              [...path, 'allowFrom', j],
              `"${entry}" is not an IP address or CIDR range`,
              'Write an address or a network such as 192.168.1.20, 192.168.0.0/16 or fd00::/8.',
            );
        });
        if (l.allowFrom.length === 0) {
          report(
            [...path, 'allowFrom'],
            'an empty allowFrom would refuse every client',
            'List the networks that may connect, or leave allowFrom out to allow anyone who can reach the port.',
          );
        }
        listener.allowFrom = l.allowFrom.map((e) => e.trim());
      }
      if ('proxyProtocol' in l) buildProxyProtocol(l, listener, path, report);
      if (protocol === 'http' && l.tls === 'starttls') {
        report([...path, 'tls'], 'HTTP has no STARTTLS', 'Use tls: implicit (HTTPS) or tls: none.');
      }
      if (l.tls !== 'none' && (l.cert === undefined || l.key === undefined)) {
        report(
          [...path, 'tls'],
          `tls: ${l.tls} needs a certificate and a private key`,
          'Add cert: and key: with the paths of PEM files, or set tls: none.',
        );
      }
      if (l.cert !== undefined) {
        const cert = readFile([...path, 'cert'], l.cert, 'certificate');
        if (cert !== undefined) listener.cert = cert;
      }
      if (l.key !== undefined) {
        const key = readFile([...path, 'key'], l.key, 'private key');
        if (key !== undefined) listener.key = key;
      }
      if (listener.cert !== undefined && listener.key !== undefined) {
        try {
          createSecureContext({ cert: listener.cert, key: listener.key });
        } catch (err) {
          report(
            [...path, 'cert'],
            `cert and key are not a usable pair (${(err as Error).message})`,
            'Point cert at the PEM certificate chain and key at its matching PEM private key.',
          );
        }
      }
      const addr = `${listener.host}:${listener.port}`;
      const first = seen.get(addr);
      if (first && listener.port !== 0) {
        report(
          [...path, 'port'],
          `${addr} is already used by ${where(first)}`,
          'Give each listener its own port.',
        );
      } else {
        seen.set(addr, path);
      }
      out[protocol].push(listener);
    });
  }
  return out;
}

/** A mail listener's PROXY protocol keys: trustedProxies must name who may send the header. */
function buildProxyProtocol(l: RawMailListener, listener: ListenerConfig, path: Path, report: Report): void {
  const trusted = l.trustedProxies ?? [];
  trusted.forEach((entry, j) => {
    if (!parseCidr(entry))
      report(
        [...path, 'trustedProxies', j],
        `"${entry}" is not an IP address or CIDR range`,
        "Write the load balancer's address or network, such as 10.0.0.5 or 10.0.0.0/24.",
      );
  });
  if (!l.proxyProtocol) {
    if (l.trustedProxies !== undefined) {
      report(
        [...path, 'trustedProxies'],
        'trustedProxies has no effect without proxyProtocol: true',
        'Set proxyProtocol: true if a load balancer sends PROXY headers to this listener, or remove trustedProxies.',
      );
    }
    return;
  }
  if (trusted.length === 0) {
    report(
      [...path, 'trustedProxies'],
      'proxyProtocol: true needs trustedProxies, the load balancers allowed to name the client address',
      "List the load balancers' addresses, such as trustedProxies: [10.0.0.5] (anyone else would be able to claim any address).",
    );
    return;
  }
  listener.proxyProtocol = { trustedProxies: trusted.map((e) => e.trim()) };
}

function checkUrl(report: Report, path: Path, value: string | undefined): void {
  if (value === undefined) return;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    report(
      path,
      `"${value}" is not a URL`,
      'Write the full URL, such as https://login.example.com/oauth2/token.',
    );
    return;
  }
  if (url.protocol === 'https:') return;
  if (url.protocol === 'http:' && LOOPBACK.has(url.hostname)) return;
  report(
    path,
    `${url.protocol}// is not allowed here`,
    'Use an https URL (plain http only for 127.0.0.1 or localhost).',
  );
}

function buildConnections(
  raw: RawConnection[],
  report: Report,
  readFile: ReadFile,
): Map<string, ConnectionConfig> {
  const out = new Map<string, ConnectionConfig>();
  const firstIndex = new Map<string, number>();
  raw.forEach((c, i) => {
    const path: Path = ['connections', i];
    const at = (key: string): Path => [...path, key];
    const provider: ProviderKind = c.provider === 'azure' ? 'microsoft' : c.provider;
    const name = PROVIDER_NAME[provider];
    const grant = c.grant ?? 'authorization_code';
    const delegated = grant !== 'client_credentials' && grant !== 'service_account';

    const prev = firstIndex.get(c.name);
    if (prev !== undefined) {
      report(
        at('name'),
        `connection name "${c.name}" is already used by connections[${prev}]`,
        'Give each connection a unique name.',
      );
      return;
    }
    firstIndex.set(c.name, i);

    if (provider !== 'google' && c.projectId !== undefined) {
      report(
        at('projectId'),
        `a ${name} connection has no projectId (that is a Google setting)`,
        provider === 'microsoft'
          ? 'Remove projectId; a Microsoft connection names its tenant with tenantId.'
          : 'Remove projectId.',
      );
    }
    if (provider === 'google' && c.tenantId !== undefined) {
      report(
        at('tenantId'),
        'a Google connection has no tenantId (that is a Microsoft setting)',
        'Remove tenantId.',
      );
    }
    if (provider !== 'microsoft' && c.cloud !== undefined) {
      report(at('cloud'), `a ${name} connection has no cloud (that is a Microsoft setting)`, 'Remove cloud.');
    }
    if (provider === 'google' && grant === 'device_code') {
      report(
        at('grant'),
        'Google does not allow the device_code grant for Gmail scopes (it answers invalid_scope)',
        'Use grant: authorization_code (the default) and consent in a browser.',
      );
    }
    if (provider === 'google' && grant === 'client_credentials') {
      report(
        at('grant'),
        'Google has no client_credentials grant for Gmail',
        'Use grant: authorization_code (the default) and let each mailbox owner consent.',
      );
    }
    if (grant === 'service_account' && provider === 'microsoft') {
      report(
        at('grant'),
        'grant service_account is Google domain-wide delegation; Microsoft has no such grant',
        'Use grant: client_credentials (app-only access) on a Microsoft connection.',
      );
    }
    if (grant !== 'service_account') {
      for (const key of ['serviceAccountKeyFile', 'serviceAccountKey'] as const) {
        if (c[key] !== undefined) {
          report(
            at(key),
            `${key} is only used with grant: service_account`,
            `Remove ${key}, or set grant: service_account.`,
          );
        }
      }
    }
    if (c.clientCertificate !== undefined && provider === 'google') {
      report(
        at('clientCertificate'),
        'Google does not accept certificate credentials for OAuth clients',
        'Remove clientCertificate; use clientSecret, or grant: service_account.',
      );
    }
    if (
      c.clientCertificate !== undefined &&
      (c.clientSecret !== undefined || c.clientSecretFile !== undefined)
    ) {
      report(
        at('clientCertificate'),
        'clientCertificate and a client secret are both set',
        'Keep only one way of authenticating the client.',
      );
    }
    if (c.clientSecret !== undefined && c.clientSecretFile !== undefined) {
      report(
        at('clientSecretFile'),
        'clientSecret and clientSecretFile are both set',
        'Keep only one of them.',
      );
    }
    if (c.ca !== undefined && c.caFile !== undefined) {
      report(at('caFile'), 'ca and caFile are both set', 'Keep only one of them.');
    }
    if (provider === 'microsoft' && c.sasl === 'oauthbearer') {
      report(
        at('sasl'),
        'Microsoft supports only XOAUTH2, not OAUTHBEARER',
        'Remove sasl, or set sasl: xoauth2.',
      );
    }

    let tenantId = c.tenantId;
    if (provider === 'microsoft') {
      const tenant = c.tenantId ?? 'common';
      if (
        c.tenantId !== undefined &&
        !GUID.test(tenant) &&
        !DOMAIN.test(tenant) &&
        !MICROSOFT_MULTI_TENANTS.includes(tenant)
      ) {
        report(
          at('tenantId'),
          `"${tenant}" is not a Microsoft tenant`,
          'Use the tenant id (a GUID) or a verified domain, or common, organizations or consumers.',
        );
      }
      if (grant === 'client_credentials' && MICROSOFT_MULTI_TENANTS.includes(tenant)) {
        report(
          c.tenantId === undefined ? path : at('tenantId'),
          `grant client_credentials needs a tenant-specific tenantId, not ${tenant}`,
          "Set tenantId to your tenant's GUID or domain (Entra admin center, Overview).",
        );
      }
      tenantId = tenant;
    }

    let clientSecret = c.clientSecret;
    if (c.clientSecretFile !== undefined) {
      const text = readFile(at('clientSecretFile'), c.clientSecretFile, 'client secret');
      if (text !== undefined) clientSecret = text.replace(/\r?\n$/, '');
    }
    if (
      grant === 'client_credentials' &&
      (clientSecret === undefined || clientSecret === '') &&
      c.clientSecretFile === undefined &&
      c.clientCertificate === undefined
    ) {
      report(
        path,
        'grant client_credentials needs a client secret or a certificate',
        'Set clientSecret, clientSecretFile or clientCertificate.',
      );
    }
    const serviceAccount =
      grant === 'service_account' ? buildServiceAccount(c, at, report, readFile) : undefined;
    const clientCertificate = buildClientCertificate(c, at, report, readFile);
    let ca = c.ca;
    if (c.caFile !== undefined) ca = readFile(at('caFile'), c.caFile, 'CA certificate');

    let preset: Partial<ProviderPreset> = {};
    if (provider === 'google') preset = googlePreset();
    if (provider === 'microsoft') {
      preset = microsoftPreset({
        tenantId: tenantId ?? 'common',
        cloud: (c.cloud ?? 'global') as MicrosoftCloud,
        grant,
      });
    }

    if (
      provider === 'microsoft' &&
      delegated &&
      c.scopes !== undefined &&
      !c.scopes.includes('offline_access')
    ) {
      report(
        at('scopes'),
        'a delegated Microsoft connection needs the offline_access scope (without it there is no refresh token, and the mailbox owner must consent again every hour)',
        'Add offline_access to scopes.',
      );
    }
    if (provider === 'custom') {
      if (c.tokenUrl === undefined)
        report(at('tokenUrl'), 'a custom connection needs tokenUrl', 'Add the token endpoint URL.');
      if (c.authorizeUrl === undefined && grant === 'authorization_code') {
        report(
          at('authorizeUrl'),
          'a custom connection needs authorizeUrl',
          'Add the authorization endpoint URL.',
        );
      }
      if (c.deviceCodeUrl === undefined && grant === 'device_code') {
        report(
          at('deviceCodeUrl'),
          'grant device_code needs deviceCodeUrl',
          'Add the device authorization endpoint URL.',
        );
      }
      if (c.scopes === undefined)
        report(at('scopes'), 'a custom connection needs scopes', 'List the scopes to request.');
      if (c.imap === undefined && c.smtp === undefined && c.pop3 === undefined) {
        report(
          path,
          'a custom connection needs at least one mail server',
          'Add imap:, smtp: or pop3: with host and port.',
        );
      }
    }
    for (const key of ['authorizeUrl', 'tokenUrl', 'deviceCodeUrl', 'userinfoUrl', 'graphUrl'] as const)
      checkUrl(report, at(key), c[key]);
    const graph = buildGraph(c, provider, grant, at, report);

    const conn: ConnectionConfig = {
      name: c.name,
      provider,
      clientId: c.clientId,
      grant,
      authorizeUrl: c.authorizeUrl ?? preset.authorizeUrl ?? '',
      tokenUrl: c.tokenUrl ?? preset.tokenUrl ?? '',
      // A service account asks for the mail scope only: openid/email make no sense without a user.
      scopes: c.scopes ?? (grant === 'service_account' ? [GOOGLE_MAIL_SCOPE] : (preset.scopes ?? [])),
      authorizeParams: { ...preset.authorizeParams, ...c.authorizeParams },
      sasl: c.sasl ?? preset.sasl ?? 'xoauth2',
      allowedIdentities: (c.allowedIdentities ?? []).map((id) => id.toLowerCase()),
    };
    if (graph) {
      conn.send = c.send ?? 'smtp';
      conn.graph = graph;
    }
    // An empty secret (e.g. ${SECRET:-}) means a public client: send no client_secret at all.
    if (clientSecret !== undefined && clientSecret !== '') conn.clientSecret = clientSecret;
    if (serviceAccount) conn.serviceAccount = serviceAccount;
    if (clientCertificate) conn.clientCertificate = clientCertificate;
    if (c.projectId !== undefined) conn.projectId = c.projectId;
    if (tenantId !== undefined) conn.tenantId = tenantId;
    const deviceCodeUrl = c.deviceCodeUrl ?? preset.deviceCodeUrl;
    if (deviceCodeUrl !== undefined) conn.deviceCodeUrl = deviceCodeUrl;
    const userinfoUrl = c.userinfoUrl ?? preset.userinfoUrl;
    if (userinfoUrl !== undefined) conn.userinfoUrl = userinfoUrl;
    if (ca !== undefined) conn.ca = ca;
    for (const proto of MAIL_PROTOCOLS) {
      const server = mergeServer(preset[proto], c[proto], at(proto), report);
      if (server) conn[proto] = server;
    }
    out.set(c.name, conn);
  });
  return out;
}

/**
 * Graph sending: Microsoft connections bring the cloud's Graph URL and scope; a custom connection
 * must name both. Google has no Graph, and a Graph key without a Graph mode would be silently unused.
 */
function buildGraph(
  c: RawConnection,
  provider: ProviderKind,
  grant: GrantType,
  at: (key: string) => Path,
  report: Report,
): GraphSettings | undefined {
  const send = c.send ?? 'smtp';
  if (send === 'smtp') {
    for (const key of ['graphUrl', 'graphScopes', 'saveToSentItems'] as const) {
      if (c[key] !== undefined) {
        report(
          at(key),
          `${key} is only used when send is graph or auto`,
          `Remove ${key}, or set send: graph (or auto).`,
        );
      }
    }
    return undefined;
  }
  if (provider === 'google') {
    report(
      at('send'),
      `send: ${send} sends through Microsoft Graph, which Google accounts do not have`,
      'Remove send (Gmail accepts XOAUTH2 on SMTP).',
    );
    return undefined;
  }
  if (grant === 'service_account') {
    report(at('send'), 'Graph sending needs a Microsoft grant, not service_account', 'Remove send.');
    return undefined;
  }
  if (provider === 'custom') {
    if (send === 'auto') {
      report(
        at('send'),
        'send: auto reacts to Exchange Online refusing SMTP AUTH (535 5.7.139); a custom connection has no such answer',
        'Use send: graph, or send: smtp.',
      );
    }
    if (c.graphUrl === undefined)
      report(
        at('graphUrl'),
        'a custom connection with send: graph needs graphUrl',
        'Add the Graph API base URL.',
      );
    if (c.graphScopes === undefined)
      report(
        at('graphScopes'),
        'a custom connection with send: graph needs graphScopes',
        'List the Graph scopes.',
      );
  }
  const preset =
    provider === 'microsoft'
      ? microsoftGraphPreset({ cloud: (c.cloud ?? 'global') as MicrosoftCloud, grant })
      : { url: '', scopes: [] };
  return {
    url: (c.graphUrl ?? preset.url).replace(/\/+$/, ''),
    scopes: c.graphScopes ?? preset.scopes,
    saveToSentItems: c.saveToSentItems ?? true,
  };
}

function buildServiceAccount(
  c: RawConnection,
  at: (key: string) => Path,
  report: Report,
  readFile: ReadFile,
): ConnectionConfig['serviceAccount'] {
  if (c.serviceAccountKeyFile !== undefined && c.serviceAccountKey !== undefined) {
    report(
      at('serviceAccountKey'),
      'serviceAccountKey and serviceAccountKeyFile are both set',
      'Keep only one of them.',
    );
    return undefined;
  }
  if (c.clientSecret !== undefined || c.clientSecretFile !== undefined) {
    report(
      at(c.clientSecret !== undefined ? 'clientSecret' : 'clientSecretFile'),
      'a service account signs with its key; a client secret is not used',
      'Remove the client secret.',
    );
  }
  let text = c.serviceAccountKey;
  let where = at('serviceAccountKey');
  if (c.serviceAccountKeyFile !== undefined) {
    where = at('serviceAccountKeyFile');
    text = readFile(where, c.serviceAccountKeyFile, 'service account key');
    if (text === undefined) return undefined;
  }
  if (text === undefined) {
    report(
      at('grant'),
      'grant service_account needs the service account key',
      'Set serviceAccountKeyFile to the JSON key file (or serviceAccountKey to its contents).',
    );
    return undefined;
  }
  const parsed = parseServiceAccountKey(text, c.clientId);
  if ('problem' in parsed) {
    report(where, parsed.problem, parsed.fix);
    return undefined;
  }
  return parsed.key;
}

function buildClientCertificate(
  c: RawConnection,
  at: (key: string) => Path,
  report: Report,
  readFile: ReadFile,
): ConnectionConfig['clientCertificate'] {
  const cc = c.clientCertificate;
  if (cc === undefined) return undefined;
  const base = at('clientCertificate');
  const sub = (key: string): Path => [...base, key];
  if (cc.keyPassphrase !== undefined && cc.keyPassphraseFile !== undefined) {
    report(
      sub('keyPassphraseFile'),
      'keyPassphrase and keyPassphraseFile are both set',
      'Keep only one of them.',
    );
  }
  const certPem = readFile(sub('certFile'), cc.certFile, 'certificate');
  const keyPem = readFile(sub('keyFile'), cc.keyFile, 'private key');
  let passphrase = cc.keyPassphrase;
  if (cc.keyPassphraseFile !== undefined) {
    const text = readFile(sub('keyPassphraseFile'), cc.keyPassphraseFile, 'key passphrase');
    if (text === undefined) return undefined;
    passphrase = text.replace(/\r?\n$/, '');
  }
  if (certPem === undefined || keyPem === undefined) return undefined;
  const loaded = loadClientCertificate(
    { certPem, certFile: cc.certFile, keyPem, passphrase, algorithm: cc.algorithm ?? 'PS256' },
    Date.now(),
  );
  if ('problem' in loaded) {
    report(sub(loaded.key), loaded.problem, loaded.fix);
    return undefined;
  }
  return loaded.certificate;
}

function mergeServer(
  preset: UpstreamServer | undefined,
  override: RawConnection['imap'],
  path: Path,
  report: Report,
): UpstreamServer | undefined {
  if (override === undefined) return preset;
  const host = override.host ?? preset?.host;
  const port = override.port ?? preset?.port;
  if (host === undefined || port === undefined) {
    report(
      [...path, host === undefined ? 'host' : 'port'],
      `a server without a preset needs ${host === undefined ? 'host' : 'port'}`,
      'Give host and port (and tls: implicit or starttls).',
    );
    return undefined;
  }
  const tls =
    override.tls ??
    (IMPLICIT_TLS_PORTS.has(port)
      ? 'implicit'
      : STARTTLS_PORTS.has(port)
        ? 'starttls'
        : (preset?.tls ?? 'implicit'));
  return { host, port, tls };
}

function buildAccounts(
  raw: NonNullable<RawConfig['accounts']>,
  connections: Map<string, ConnectionConfig>,
  report: Report,
  where: (path: Path) => string,
): AccountConfig[] {
  const out: AccountConfig[] = [];
  const seen = new Map<string, Path>();
  const known = [...connections.keys()];
  raw.forEach((a, i) => {
    const path: Path = ['accounts', i];
    const at = (key: string): Path => [...path, key];
    const isPattern = a.username.includes('*');
    if (isPattern && !PATTERN.test(a.username)) {
      report(
        at('username'),
        `"${a.username}" is not a valid pattern`,
        'A pattern is "*@" followed by a domain, such as *@example.com.',
      );
    }
    if (isPattern && a.email !== undefined) {
      report(
        at('email'),
        'a pattern account cannot have one email',
        'Remove email; each user of the domain logs in to their own mailbox.',
      );
    }
    if (!isPattern && a.email === undefined && !a.username.includes('@')) {
      report(
        at('username'),
        `username "${a.username}" is not an email address, so the mailbox is unknown`,
        `Add email: with the mailbox address.`,
      );
    }
    if (!connections.has(a.connection)) {
      report(
        at('connection'),
        `unknown connection "${a.connection}"`,
        known.length === 0 ? 'Define it under connections: first.' : `Use one of: ${known.join(', ')}.`,
      );
    }
    const key = a.username.toLowerCase();
    const first = seen.get(key);
    if (first) {
      report(
        at('username'),
        `username "${a.username}" is already claimed by ${where(first)}`,
        'Each username may appear only once; remove or rename one of them.',
      );
    } else {
      seen.set(key, at('username'));
    }
    if (isPattern && a.password !== undefined) {
      report(
        at('password'),
        `password is not allowed on a pattern account: one password for every address at ${a.username.slice(2)} would let whoever knows it open every mailbox of the domain`,
        "Remove it; a pattern account's users log in with their own app passwords, made after their consent.",
      );
    } else if (a.password !== undefined && !isPasswordHash(a.password)) {
      report(
        at('password'),
        'password is not a scrypt hash (plain-text passwords are not allowed)',
        'Run `xoauth-proxy hash-password` and paste its output here.',
      );
    }
    const account: AccountConfig = { username: a.username, connection: a.connection };
    if (a.email !== undefined) account.email = a.email;
    if (a.password !== undefined && !isPattern) account.password = a.password;
    out.push(account);
  });
  return out;
}

function buildStore(raw: RawConfig, dir: string, report: Report, readFile: ReadFile): Config['store'] {
  const st = raw.store ?? {};
  const keyFile = resolve(dir, st.keyFile ?? DEFAULTS.store.keyFile);
  if (st.kind !== 'postgres') {
    for (const key of ['url', 'urlFile', 'refreshLease', 'pool', 'timeout'] as const) {
      if (st[key] !== undefined)
        report(['store', key], `${key} is a postgres setting`, 'Set store.kind: postgres, or remove it.');
    }
    return { path: resolve(dir, st.path ?? DEFAULTS.store.path), keyFile };
  }
  if (st.path !== undefined)
    report(['store', 'path'], 'path is the SQLite file; a postgres store has none', 'Remove it (use url).');
  let url = st.url;
  if (st.url !== undefined && st.urlFile !== undefined) {
    report(['store', 'urlFile'], 'url and urlFile are both set', 'Keep only one of them.');
  } else if (st.urlFile !== undefined) {
    url = readFile(['store', 'urlFile'], st.urlFile, 'database URL')?.trim();
  } else if (url === undefined) {
    report(['store', 'url'], 'a postgres store needs its database', 'Set store.url (or store.urlFile).');
  }
  if (url !== undefined && !/^postgres(ql)?:\/\//.test(url)) {
    report(
      ['store', st.urlFile !== undefined ? 'urlFile' : 'url'],
      'is not a PostgreSQL URL',
      'Use postgres://user@host:5432/database (add ?sslmode=verify-full for a database on another host).',
    );
  }
  const dp = DEFAULTS.postgres;
  return {
    kind: 'postgres',
    url: url ?? '',
    keyFile,
    refreshLeaseMs: Math.max(1000, st.refreshLease ?? dp.refreshLeaseMs),
    poolMax: st.pool?.max ?? dp.poolMax,
    timeoutMs: Math.max(100, st.timeout ?? dp.timeoutMs),
  };
}

function buildHttp(raw: RawConfig, report: Report, readFile: ReadFile): Config['http'] {
  const h = raw.http ?? {};
  let adminPassword = h.adminPassword;
  if (h.adminPassword !== undefined && h.adminPasswordFile !== undefined) {
    report(
      ['http', 'adminPasswordFile'],
      'adminPassword and adminPasswordFile are both set',
      'Keep only one of them.',
    );
  }
  if (h.adminPasswordFile !== undefined) {
    const text = readFile(['http', 'adminPasswordFile'], h.adminPasswordFile, 'admin password');
    if (text !== undefined) adminPassword = text.trim();
  }
  const out: Config['http'] = {
    consentHint: h.consentHint ?? (adminPassword !== undefined ? 'admin' : DEFAULTS.http.consentHint),
    metrics: h.metrics ?? DEFAULTS.http.metrics,
  };
  if (h.publicUrl !== undefined) out.publicUrl = h.publicUrl.replace(/\/+$/, '');
  if (adminPassword !== undefined && adminPassword !== '') out.adminPassword = adminPassword;
  const trusted = h.trustedProxies ?? [];
  trusted.forEach((entry, i) => {
    if (!parseCidr(entry))
      report(
        ['http', 'trustedProxies', i],
        `"${entry}" is not an IP address or CIDR range`,
        'Write an address or a network such as 10.0.0.5, 10.0.0.0/8 or fd00::/8.',
      );
  });
  if (trusted.length > 0) out.trustedProxies = trusted.map((e) => e.trim());
  return out;
}

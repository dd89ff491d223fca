/**
 * A short human summary of a loaded config, for `check-config`: what each connection talks to, which
 * account uses which connection, where the proxy listens, plus warnings about risky but valid choices.
 */
import { storeLocation } from '../store/index.js';
import { isIP } from 'node:net';
import { CERTIFICATE_WARN_MS } from '../config/key-material.js';
import type {
  Config,
  ConnectionConfig,
  ListenerConfig,
  Protocol,
  TlsMode,
  UpstreamServer,
} from '../config/types.js';

export const PROTOCOL_LABEL: Record<Protocol, string> = {
  imap: 'IMAP',
  smtp: 'SMTP',
  pop3: 'POP3',
  http: 'HTTP',
};
const TLS_LABEL: Record<TlsMode, string> = { none: 'no TLS', starttls: 'STARTTLS', implicit: 'TLS' };

export function tlsLabel(mode: TlsMode): string {
  return TLS_LABEL[mode];
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

function server(label: string, s: UpstreamServer | undefined): string | undefined {
  return s ? `${label} ${s.host}:${s.port} (${TLS_LABEL[s.tls]})` : undefined;
}

function describeConnection(c: ConnectionConfig): string[] {
  const who =
    c.provider === 'microsoft'
      ? `microsoft, tenant ${c.tenantId ?? 'common'}`
      : c.provider === 'google'
        ? 'google'
        : 'custom';
  const servers = [server('IMAP', c.imap), server('SMTP', c.smtp), server('POP3', c.pop3)]
    .filter(Boolean)
    .join(', ');
  const auth = c.serviceAccount
    ? `service account ${c.serviceAccount.clientEmail} (domain-wide delegation)`
    : c.clientCertificate
      ? 'with client certificate'
      : c.clientSecret === undefined
        ? 'public client'
        : 'with client secret';
  const lines = [
    `  ${c.name}: ${who}, grant ${c.grant}, ${auth}`,
    `    token endpoint ${c.tokenUrl}`,
    `    servers: ${servers || 'none'}`,
  ];
  const sending = describeSending(c);
  if (sending) lines.push(`    sending: ${sending}`);
  if (sending && (c.grant === 'authorization_code' || c.grant === 'device_code')) {
    // Grants from before this connection sent through Graph lack it: `status` names them.
    lines.push('    consent asks for the mail and the Graph scopes at once');
  }
  if (c.clientCertificate) {
    const cert = c.clientCertificate;
    lines.push(
      `    certificate ${cert.subject} (${cert.algorithm}), valid until ${new Date(cert.notAfter).toISOString()}`,
    );
  }
  return lines;
}

/** How SMTP submissions of the connection's accounts leave the proxy (undefined: plain SMTP relay). */
function describeSending(c: ConnectionConfig): string | undefined {
  const graph = c.graph;
  if (!graph || c.send === undefined || c.send === 'smtp') return undefined;
  const via = `Microsoft Graph ${graph.url} (scopes ${graph.scopes.join(' ')}; ${
    graph.saveToSentItems ? 'copies in Sent Items' : 'no copies in Sent Items'
  })`;
  return c.send === 'graph'
    ? `every message through ${via}; the proxy answers MAIL/RCPT/DATA itself`
    : `SMTP relay; a mailbox whose SMTP login is refused with 535 5.7.139 (SMTP AUTH off) switches to ${via}`;
}

export function listenerLine(protocol: Protocol, l: Pick<ListenerConfig, 'host' | 'port' | 'tls'>): string {
  const host = l.host.includes(':') ? `[${l.host}]` : l.host;
  return `${PROTOCOL_LABEL[protocol].padEnd(4)}  ${host}:${l.port}  (${TLS_LABEL[l.tls]})`;
}

export function explainConfig(
  config: Config,
  now: number = Date.now(),
): { lines: string[]; warnings: string[] } {
  const lines: string[] = [];
  const warnings: string[] = [];
  for (const c of config.connections.values()) {
    const cert = c.clientCertificate;
    if (cert && cert.notAfter - now < CERTIFICATE_WARN_MS) {
      const days = Math.max(0, Math.floor((cert.notAfter - now) / 86_400_000));
      warnings.push(
        `The client certificate of connection ${c.name} (${cert.certFile}) expires in ${days} days, on ` +
          `${new Date(cert.notAfter).toISOString()}: upload a new one to the app registration and point certFile/keyFile at it.`,
      );
    }
  }

  lines.push(`Connections (${config.connections.size}):`);
  for (const c of config.connections.values()) lines.push(...describeConnection(c));

  lines.push(`Accounts (${config.accounts.length}):`);
  for (const a of config.accounts) {
    const target = a.username.startsWith('*@')
      ? `any address at ${a.username.slice(2)} (and its subdomains), each with its own consent`
      : `mailbox ${a.email ?? a.username}`;
    const password = a.password !== undefined ? 'password + app passwords' : 'app passwords only';
    const send = config.connections.get(a.connection)?.send;
    const sends =
      send === 'graph'
        ? '; sends through Graph'
        : send === 'auto'
          ? '; sends by SMTP, or Graph if SMTP AUTH is off'
          : '';
    lines.push(`  ${a.username} -> ${a.connection}: ${target}; ${password}${sends}`);
  }

  const listeners = (Object.keys(config.listen) as Protocol[]).flatMap((p) =>
    config.listen[p].map((l) => ({ protocol: p, l })),
  );
  lines.push(`Listeners (${listeners.length}):`);
  for (const { protocol, l } of listeners) {
    lines.push(`  ${listenerLine(protocol, l)}`);
    if (l.allowFrom) lines.push(`    only from ${l.allowFrom.join(', ')}`);
    if (l.proxyProtocol) {
      lines.push(
        `    PROXY protocol header from ${l.proxyProtocol.trustedProxies.join(', ')} (only those may connect)`,
      );
    }
    if (l.tls === 'none' && !isLoopback(l.host) && !l.allowFrom) {
      warnings.push(
        `${PROTOCOL_LABEL[protocol]} listener ${l.host}:${l.port} is reachable from the network without TLS: passwords cross it in clear text. Add TLS, or allowFrom with the networks that may connect.`,
      );
    }
  }
  if (config.http.publicUrl !== undefined) lines.push(`Consent and admin pages: ${config.http.publicUrl}`);
  // Consent links, welcome pages with app passwords, and notifications that carry consent links are
  // worth as much as the mailbox: over plain http to another host anyone on the path can use them.
  const plain = (url: string | undefined): string | undefined => {
    if (url === undefined) return undefined;
    try {
      const u = new URL(url);
      return u.protocol === 'http:' && !isLoopback(u.hostname.replace(/^\[|\]$/g, '')) ? u.host : undefined;
    } catch {
      return undefined;
    }
  };
  const publicHost = plain(config.http.publicUrl);
  if (publicHost !== undefined) {
    warnings.push(
      `http.publicUrl ${config.http.publicUrl} is plain http on ${publicHost}: consent links and the app ` +
        `passwords on the welcome page would cross the network in clear text. Use https (a TLS http ` +
        `listener or a reverse proxy that terminates TLS).`,
    );
  }
  const webhookHost = plain(config.notify.webhook);
  if (webhookHost !== undefined) {
    warnings.push(
      `notify.webhook is plain http on ${webhookHost}: notifications carry consent links, which would ` +
        `cross the network in clear text. Use an https webhook.`,
    );
  }
  lines.push(`Token store: ${storeLocation(config.store)}`);

  const used = new Set(config.accounts.map((a) => a.connection));
  for (const name of config.connections.keys()) {
    if (!used.has(name)) warnings.push(`Connection ${name} is not used by any account.`);
  }
  if (listeners.length === 0) warnings.push('No listeners: the proxy would accept no connections.');
  if (config.listen.http.length === 0 && config.accounts.length > 0) {
    warnings.push('No HTTP listener: consent only works with the consent command.');
  }
  return { lines, warnings };
}

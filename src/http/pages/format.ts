import type { ConnectionConfig, ListenerConfig, TlsMode } from '../../config/types.js';

/** "2026-11-28 17:05 UTC": unambiguous for every reader, no locale guessing on the server. */
export function formatTime(ms: number | undefined): string {
  if (ms === undefined) return '—';
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return '—';
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function providerName(connection: ConnectionConfig): string {
  switch (connection.provider) {
    case 'google':
      return 'Google';
    case 'microsoft':
      return 'Microsoft';
    default:
      return connection.name;
  }
}

export function tlsLabel(tls: TlsMode): string {
  switch (tls) {
    case 'implicit':
      return 'SSL/TLS';
    case 'starttls':
      return 'STARTTLS';
    default:
      return 'None (only on this computer or network)';
  }
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]', '']);

/** The host name a mail client should use for a listener. */
export function clientHost(listener: ListenerConfig, publicHost: string): string {
  return WILDCARD_HOSTS.has(listener.host) ? publicHost : listener.host;
}

/** Never more than the last 4 characters, and only of a long secret. */
export function maskSecret(secret: string | undefined): string {
  if (!secret) return 'none (public client)';
  return secret.length >= 16 ? `••••••••${secret.slice(-4)}` : '••••••••';
}

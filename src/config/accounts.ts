/**
 * Username -> account. An exact entry (case-insensitive) wins over a domain pattern; among patterns the
 * most specific (longest domain) wins, so `*@eu.example.com` beats `*@example.com`.
 */
import type { AccountConfig, Config, ConnectionConfig, ResolvedAccount } from './types.js';

function patternDomain(entry: string): string | undefined {
  return entry.startsWith('*@') ? entry.slice(2).toLowerCase() : undefined;
}

/** Does a pattern domain cover the username's domain (exactly, or as a parent domain)? */
function covers(domain: string, userDomain: string): boolean {
  return userDomain === domain || userDomain.endsWith(`.${domain}`);
}

export function findAccountEntry(
  accounts: readonly AccountConfig[],
  username: string,
): AccountConfig | undefined {
  const lower = username.toLowerCase();
  const exact = accounts.find(
    (a) => patternDomain(a.username) === undefined && a.username.toLowerCase() === lower,
  );
  if (exact) return exact;
  const at = lower.lastIndexOf('@');
  if (at <= 0) return undefined;
  const userDomain = lower.slice(at + 1);
  let best: { entry: AccountConfig; length: number } | undefined;
  for (const a of accounts) {
    const domain = patternDomain(a.username);
    if (domain === undefined || !covers(domain, userDomain)) continue;
    if (!best || domain.length > best.length) best = { entry: a, length: domain.length };
  }
  return best?.entry;
}

/**
 * A plain mailbox address, `local@domain`: a dot-atom local part (RFC 5321 atext without `*`, or
 * letters and digits of any script for internationalized addresses) and a domain of dot-separated
 * labels. Nothing else may reach a pattern account: the typed name becomes the upstream mailbox and
 * goes into the XOAUTH2 payload, where a control character (the ^A separator), a space or a quote
 * could change what the provider reads.
 */
const LOCAL_ATOM = "[\\p{L}\\p{M}\\p{N}!#$%&'+\\-/=?^_`{|}~]+";
const DOMAIN_LABEL = '[\\p{L}\\p{M}\\p{N}](?:[\\p{L}\\p{M}\\p{N}-]{0,61}[\\p{L}\\p{M}\\p{N}])?';
const MAILBOX = new RegExp(
  `^${LOCAL_ATOM}(?:\\.${LOCAL_ATOM})*@${DOMAIN_LABEL}(?:\\.${DOMAIN_LABEL})+$`,
  'u',
);

export function isPlainMailboxAddress(address: string): boolean {
  if (address.length > 254) return false;
  const at = address.lastIndexOf('@');
  return at > 0 && at <= 64 && MAILBOX.test(address);
}

/** The account a typed username logs in to, or undefined when no entry (or its connection) exists. */
export function resolveAccount(config: Config, username: string): ResolvedAccount | undefined {
  const typed = username.trim();
  if (typed === '' || typed.includes('*')) return undefined;
  const entry = findAccountEntry(config.accounts, typed);
  if (!entry) return undefined;
  // An exact entry is a name the admin wrote; a pattern takes whatever the client typed, so only a
  // plain address may pass (anything else is an unknown user).
  if (patternDomain(entry.username) !== undefined && !isPlainMailboxAddress(typed)) return undefined;
  const connection = config.connections.get(entry.connection);
  if (!connection) return undefined;
  const email = entry.email ?? typed;
  const resolved: ResolvedAccount = {
    id: email.toLowerCase(),
    username: typed,
    email,
    connection,
    entry: entry.username,
  };
  // A pattern never has a shared password (the config refuses one); should one reach here anyway, it
  // must not let one password open every mailbox of the domain.
  if (entry.password !== undefined && patternDomain(entry.username) === undefined) {
    resolved.passwordHash = entry.password;
  }
  return resolved;
}

/**
 * Grants where nobody signs in: app-only client credentials, and a Google service account acting for
 * each mailbox. They have no refresh token, no consent link and no welcome page.
 */
export function grantHasNoConsent(connection: Pick<ConnectionConfig, 'grant'>): boolean {
  return connection.grant === 'client_credentials' || connection.grant === 'service_account';
}

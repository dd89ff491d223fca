/**
 * The sentence a mail client gets when its account needs consent (it ends up in an IMAP NO / SMTP 535
 * text, so: one line, plain ASCII-safe text, no secrets).
 */
import { grantHasNoConsent } from '../config/accounts.js';
import type { Config, ResolvedAccount } from '../config/types.js';
import { publicBaseUrl } from '../config/public-url.js';

export function consentHintFor(config: Config, account: ResolvedAccount): string {
  const viaAdmin =
    config.http.consentHint === 'admin' &&
    Boolean(config.http.adminPassword) &&
    config.listen.http.length > 0;
  const text = grantHasNoConsent(account.connection)
    ? `The server's own access to ${account.username} was refused: ask your administrator (nobody can consent for this account)`
    : viaAdmin
      ? `Access for ${account.username} must be granted again: ${publicBaseUrl(config)}/admin ("Refresh token")`
      : `Access for ${account.username} must be granted again: ask your admin to run "xoauth-proxy consent-link ${account.username}"`;
  // Never let a username with control characters break a protocol line.
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, ' ');
}

/**
 * Turns whatever a check ran into (a ProxyError from the TokenManager or our own upstream code, a
 * TLS or socket error from imapflow or nodemailer) into one sentence that says what to do. The only
 * place that knows the codes; the protocol checks just throw.
 */
import { grantHasNoConsent } from '../config/accounts.js';
import type { ResolvedAccount } from '../config/types.js';
import { isProxyError } from '../errors.js';
import type { CheckFailure, CheckProtocol } from './types.js';
import { smtpAuthDisabled } from '../proxy/smtp/send-route.js';

/** Node/OpenSSL verification codes that mean "this chain does not end at a CA we trust". */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REJECTED',
]);
const DATES = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
/** Plain text where TLS was expected (or the reverse): usually implicit TLS against a STARTTLS port. */
const HANDSHAKE = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'EPROTO',
]);
const TIMEOUTS = new Set(['ETIMEDOUT', 'CONNECT_TIMEOUT', 'GREETING_TIMEOUT', 'ETIMEOUT', 'ESOCKETTIMEDOUT']);
const PROTOCOL_NAME: Record<CheckProtocol, string> = { imap: 'IMAP', smtp: 'SMTP', pop3: 'POP3' };

interface Coded {
  code: string;
  message: string;
}

/** nodemailer's own wrapper codes: they say which stage failed, not why (`originalCode` does). */
const WRAPPERS = new Set(['EAUTH', 'ESOCKET', 'ECONNECTION', 'EENVELOPE', 'EMESSAGE', 'EPROTOCOL']);

/** The first system/TLS error code in the error, its nodemailer `originalCode`, or its causes. */
function findCode(err: unknown): Coded | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 6 && current instanceof Error; depth++) {
    const e = current as Error & { code?: unknown; originalCode?: unknown };
    for (const code of [e.originalCode, e.code]) {
      if (typeof code === 'string' && /^[A-Z][A-Z0-9_]+$/.test(code) && !WRAPPERS.has(code)) {
        return { code, message: e.message };
      }
    }
    current = e.cause;
  }
  return undefined;
}

function text(err: unknown): string {
  if (isProxyError(err)) return err.detail ?? err.message;
  return err instanceof Error ? err.message : String(err);
}

const HINTS: Record<CheckProtocol, string> = {
  imap:
    'check that IMAP is enabled for the mailbox and that the grant includes IMAP access ' +
    '(Microsoft: IMAP.AccessAsUser.All; Outlook.com has IMAP off by default)',
  smtp:
    'check that the mailbox may send with SMTP AUTH and that the grant includes SMTP ' +
    '(Microsoft: SMTP.Send)',
  pop3:
    'check that POP is enabled for the mailbox (Gmail settings; Exchange: Set-CASMailbox -PopEnabled $true) ' +
    'and that the grant includes POP (Microsoft: POP.AccessAsUser.All)',
};

export function describeFailure(
  err: unknown,
  where: { protocol: CheckProtocol; account: ResolvedAccount; server: string },
): CheckFailure {
  const { protocol, account, server } = where;
  const connection = account.connection.name;
  if (isProxyError(err, 'needs-consent')) {
    if (grantHasNoConsent(account.connection)) return { kind: 'oauth-client', message: err.message };
    return {
      kind: 'needs-consent',
      message: `needs consent: run xoauth-proxy consent-link ${account.username} (${err.detail ?? 'no usable grant'})`,
    };
  }
  if (isProxyError(err, 'token-unavailable')) {
    const detail = text(err);
    if (/invalid_client|unauthorized_client/.test(detail)) {
      return {
        kind: 'oauth-client',
        message:
          `the provider refused the OAuth client of connection ${connection} (${detail}): check its ` +
          'clientId, clientSecret and app registration; the grant is kept',
      };
    }
    if (/^(Token store unavailable|Cannot save the refreshed grant)/.test(err.message)) {
      return { kind: 'store', message: `token store problem: ${err.message}` };
    }
    return {
      kind: 'token-unavailable',
      message: `token endpoint unreachable (temporary, every token kept; try again later): ${detail}`,
    };
  }
  if (isProxyError(err, 'store')) return { kind: 'store', message: err.message };
  if (isProxyError(err, 'upstream-rejected')) {
    const detail = text(err);
    if (protocol === 'smtp' && smtpAuthDisabled(detail)) {
      return {
        kind: 'smtp-auth-disabled',
        message:
          'SMTP AUTH disabled for the tenant (5.7.139): enable it (Exchange Online PowerShell: ' +
          'Set-TransportConfig -SmtpClientAuthenticationDisabled $false, or per mailbox ' +
          `Set-CASMailbox ${account.email} -SmtpClientAuthenticationDisabled $false), or send through ` +
          `Microsoft Graph instead: send: auto (or graph) on connection ${account.connection.name}`,
      };
    }
    return {
      kind: 'rejected',
      message: `${PROTOCOL_NAME[protocol]} login refused even with a freshly refreshed token (${detail}): ${HINTS[protocol]}`,
    };
  }

  const coded = findCode(err);
  if (coded) {
    const { code, message } = coded;
    if (UNTRUSTED.has(code)) {
      return {
        kind: 'tls',
        message:
          `TLS certificate of ${server} is not trusted (${code}: ${message}): if the server uses a private ` +
          `CA, set caFile on connection ${connection}; otherwise something between here and the server ` +
          'intercepts TLS',
      };
    }
    if (DATES.has(code)) {
      return {
        kind: 'tls',
        message: `TLS certificate of ${server} is not valid now (${code}: ${message}): check the server's certificate and this machine's clock`,
      };
    }
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      return {
        kind: 'tls',
        message: `TLS certificate of ${server} does not name this host (${code}: ${message}): check the host name on connection ${connection}`,
      };
    }
    if (HANDSHAKE.has(code)) {
      return {
        kind: 'tls',
        message: `TLS handshake with ${server} failed (${code}: ${message}): check the port and tls: (implicit or starttls) on connection ${connection}`,
      };
    }
    if (code === 'ECONNREFUSED') {
      return { kind: 'unreachable', message: `cannot connect to ${server}: connection refused` };
    }
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      return { kind: 'unreachable', message: `cannot resolve the host of ${server} (${code})` };
    }
    if (TIMEOUTS.has(code)) {
      return { kind: 'timeout', message: `${server} did not answer in time (${code}: ${message})` };
    }
    if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
      return { kind: 'unreachable', message: `connection to ${server} failed (${code}: ${message})` };
    }
  }
  if (isProxyError(err, 'upstream-unavailable')) {
    const detail = text(err);
    if (/timed out/.test(detail))
      return { kind: 'timeout', message: `${server} did not answer in time (${err.message})` };
    if (/TLS failed|certificate/i.test(detail)) {
      return { kind: 'tls', message: `TLS with ${server} failed: ${err.message}` };
    }
    return { kind: 'unreachable', message: `${PROTOCOL_NAME[protocol]} server ${server}: ${err.message}` };
  }
  return { kind: 'protocol', message: `${PROTOCOL_NAME[protocol]} server ${server}: ${text(err)}` };
}

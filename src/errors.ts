/**
 * One error type for everything a login can run into. The wire reply (IMAP `NO [UNAVAILABLE]`,
 * SMTP `454 4.7.0`, ...) is chosen from `code` at a single edge per protocol, never here.
 */
export type ProxyErrorCode =
  /** Unknown user, wrong password, or the login limiter said no. */
  | 'bad-credentials'
  /** The account has no usable grant: the mailbox owner must (re)consent. Permanent until they do. */
  | 'needs-consent'
  /** The token endpoint failed in a way that may pass (network, timeout, 408, 429, 5xx). Tokens are kept. */
  | 'token-unavailable'
  /** The upstream mail server could not be reached, or broke the dialogue. */
  | 'upstream-unavailable'
  /** The upstream mail server refused a fresh token (its reason is in `detail`). */
  | 'upstream-rejected'
  /** The configuration is wrong (bad YAML, schema error, missing secret file). */
  | 'config'
  /** The token store cannot be read or decrypted. */
  | 'store'
  /** A client broke a protocol limit (line too long, too many commands). */
  | 'limit';

/**
 * The `detail` of the needs-consent error for a grant that works for mail but was never consented
 * for Microsoft Graph: the Graph sender tells the client exactly that, and nothing of the provider's
 * own words.
 */
export const GRAPH_CONSENT_MISSING = 'consent again to allow sending through Microsoft Graph';

const TRANSIENT: ReadonlySet<ProxyErrorCode> = new Set(['token-unavailable', 'upstream-unavailable']);

export class ProxyError extends Error {
  readonly code: ProxyErrorCode;
  /** True when trying again later may work (clients should get a temporary error). */
  readonly transient: boolean;
  /** Text safe to show to a mail client or admin (never a secret). */
  readonly detail: string | undefined;

  constructor(code: ProxyErrorCode, message: string, options?: { cause?: unknown; detail?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProxyError';
    this.code = code;
    this.transient = TRANSIENT.has(code);
    this.detail = options?.detail;
  }
}

export function isProxyError(err: unknown, code?: ProxyErrorCode): err is ProxyError {
  return err instanceof ProxyError && (code === undefined || err.code === code);
}

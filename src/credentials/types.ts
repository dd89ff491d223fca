import type { ResolvedAccount } from '../config/types.js';

export interface LoginAttempt {
  username: string;
  password: string;
  /** Client IP address, for the login limiter. */
  remoteAddress: string;
}

/**
 * Checks a legacy client's local credentials: the account's admin-set password hash from the config,
 * or one of its app passwords from the store. Applies the login limiter (delay, then lock).
 * Resolves the account, or throws ProxyError 'bad-credentials' (after the limiter's delay).
 */
export interface Authenticator {
  verify(attempt: LoginAttempt): Promise<ResolvedAccount>;
}

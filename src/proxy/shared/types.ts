import type { Logger } from 'pino';
import type { Config, ResolvedAccount } from '../../config/types.js';
import type { Authenticator } from '../../credentials/types.js';
import type { TokenProvider } from '../../oauth/types.js';

/** Everything a protocol front needs from the rest of the program. */
export interface ProxyDeps {
  config: Config;
  authenticator: Authenticator;
  tokens: TokenProvider;
  logger: Logger;
  /** One short sentence telling a client where the account's owner grants access (URL or command). */
  consentHint(account: ResolvedAccount): string;
}

/** A listening protocol front (IMAP, SMTP, or the HTTP pages). */
export interface ProxyServer {
  /** Starts listening on the configured host/port (port 0 picks a free one). */
  listen(): Promise<{ host: string; port: number }>;
  /** Stops accepting; closes pre-auth sessions; relayed sessions are ended too. */
  close(): Promise<void>;
}

/**
 * What `xoauth-proxy check` reports: one result per protocol, each either what the upstream told us
 * after a real login, or a failure already turned into a sentence an admin can act on.
 */
import type { ResolvedAccount } from '../config/types.js';
import type { TokenProvider } from '../oauth/types.js';

export type CheckProtocol = 'imap' | 'smtp' | 'pop3';

export const PROTOCOLS: readonly CheckProtocol[] = ['imap', 'smtp', 'pop3'];

/** What went wrong, as a stable key for scripts (`--json`). */
export type CheckFailureKind =
  /** The grant is gone (revoked, expired, never given): the mailbox owner must consent. */
  | 'needs-consent'
  /** The provider refused the OAuth client itself (secret, app registration): the admin's to fix. */
  | 'oauth-client'
  /** The token endpoint failed in a way that may pass (network, timeout, 5xx). */
  | 'token-unavailable'
  /** The token store could not be read or written. */
  | 'store'
  /** The upstream's TLS certificate or handshake was refused. */
  | 'tls'
  /** DNS, TCP or a dropped connection. */
  | 'unreachable'
  | 'timeout'
  /** The upstream refused a freshly refreshed token. */
  | 'rejected'
  /** Exchange Online: `535 5.7.139` SMTP AUTH is disabled for the tenant or mailbox. */
  | 'smtp-auth-disabled'
  /** Anything else the upstream did that we did not expect. */
  | 'protocol';

export interface CheckFailure {
  kind: CheckFailureKind;
  /** One line: what happened and what to do. Never a token. */
  message: string;
}

export interface ImapFacts {
  /** Capabilities after login, as the server announced them. */
  capabilities: string[];
  inboxMessages: number;
  /** STATUS, or EXAMINE for a server that refuses STATUS. */
  inboxVia: 'STATUS' | 'EXAMINE';
}

export interface SmtpFacts {
  /** The server's reply to our AUTH (e.g. `235 2.7.0 Accepted`); with Graph, what was checked instead. */
  authResponse: string;
  /** The account sends through Microsoft Graph: a Graph token was obtained (no message is sent). */
  graph?: { url: string; scopes: string[]; why: 'send: graph' | 'SMTP AUTH is off (send: auto)' };
}

export interface Pop3Facts {
  /** STAT: messages in the maildrop and their total size. */
  messages: number;
  octets: number;
}

interface ResultBase {
  protocol: CheckProtocol;
  /** `host:port` of the upstream. */
  server: string;
  tls: 'implicit' | 'starttls';
  durationMs: number;
}

export type CheckResult =
  | (ResultBase & {
      ok: true;
      /** The SASL mechanism the login used, when known. */
      mechanism: string | undefined;
      /** The first token was refused and a forced refresh made the login work. */
      refreshed: boolean;
      imap?: ImapFacts;
      smtp?: SmtpFacts;
      pop3?: Pop3Facts;
    })
  | (ResultBase & { ok: false; error: CheckFailure });

/** What every protocol check gets. */
export interface CheckEnv {
  account: ResolvedAccount;
  tokens: TokenProvider;
  /** Deadline for connecting (DNS, TCP, TLS, greeting) and again for the login and the probe. */
  timeoutMs: number;
}

/** What a protocol check returns on success (the runner adds server, timing, and catches failures). */
export interface CheckSuccess<F> {
  mechanism: string | undefined;
  refreshed: boolean;
  facts: F;
}

/**
 * The login orchestration every protocol front shares:
 *
 *   authenticator.verify  ->  tokens.getAccessToken  ->  upstream auth attempt
 *        (and in parallel with the token: connect + greet the upstream)
 *   upstream refused the token  ->  getAccessToken({ forceRefresh: true })  ->  retry exactly once
 *
 * Every failure comes back as a ProxyError with one of: bad-credentials, needs-consent,
 * token-unavailable, upstream-unavailable, upstream-rejected (with the upstream's text in `detail`).
 * The protocol front then picks its wire reply from `code` (see imap/replies.ts, smtp/...).
 */
import type { ResolvedAccount } from '../../config/types.js';
import type { Authenticator } from '../../credentials/types.js';
import { ProxyError, isProxyError } from '../../errors.js';
import type { TokenOptions, TokenProvider, TokenResource } from '../../oauth/types.js';
import type { Secret } from './secret.js';
import type { SessionMetrics, SessionRecord } from './types.js';

export type UpstreamAuthOutcome<U = never> =
  /**
   * `upstream`: what the session goes on with instead of the one that was authenticated (SMTP with
   * `send: auto`: Graph, after Exchange refused SMTP AUTH for the mailbox).
   */
  | { ok: true; upstream?: U }
  /** `reason`: the upstream's own text (safe to show); `reusable`: the connection can take a retry. */
  | { ok: false; reason: string; reusable: boolean };

/** The protocol-specific half of a login (IMAP: AUTHENTICATE XOAUTH2; SMTP: AUTH XOAUTH2). */
export interface UpstreamLogin<U> {
  /**
   * Which token the login needs, decided before anything else (SMTP in Graph mode: a Graph token).
   * Absent: the mail token.
   */
  tokenResource?(account: ResolvedAccount): Promise<TokenResource>;
  /** Connect and greet (and STARTTLS); throw ProxyError 'upstream-unavailable' on failure. */
  connect(account: ResolvedAccount, signal: AbortSignal): Promise<U>;
  /** One authentication attempt; throw ProxyError 'upstream-unavailable' if the dialogue breaks. */
  authenticate(upstream: U, account: ResolvedAccount, accessToken: string): Promise<UpstreamAuthOutcome<U>>;
  /** Drop an upstream that will not be used (failure, abort). */
  close(upstream: U): void;
}

export interface LoginRequest {
  username: string;
  password: Secret;
  remoteAddress: string;
  /** The client-facing protocol, for the login-duration metric (no metric without it). */
  protocol?: SessionRecord['protocol'];
}

export type LoginResult<U> =
  | { ok: true; account: ResolvedAccount; upstream: U; /** a forced refresh was needed */ refreshed: boolean }
  | {
      ok: false;
      error: ProxyError;
      /** known once the local credentials were accepted */ account?: ResolvedAccount;
    };

export interface LoginDeps {
  authenticator: Authenticator;
  tokens: TokenProvider;
  /** Times every login by result (needs `request.protocol`). */
  metrics?: Pick<SessionMetrics, 'loginFinished'>;
}

function asProxyError(err: unknown, fallback: 'token-unavailable' | 'upstream-unavailable'): ProxyError {
  if (isProxyError(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ProxyError(fallback, message, { cause: err, detail: message });
}

/** Runs a whole login. Never throws: failures are returned, already mapped to a ProxyError code. */
export async function performLogin<U>(
  deps: LoginDeps,
  request: LoginRequest,
  protocol: UpstreamLogin<U>,
  signal: AbortSignal = new AbortController().signal,
): Promise<LoginResult<U>> {
  const metrics = deps.metrics;
  const name = request.protocol;
  if (!metrics || name === undefined) return runLogin(deps, request, protocol, signal);
  const started = performance.now();
  const result = await runLogin(deps, request, protocol, signal);
  try {
    metrics.loginFinished(name, result.ok ? 'ok' : result.error.code, (performance.now() - started) / 1000);
  } catch {
    // Counting must never turn a login into a failure.
  }
  return result;
}

async function runLogin<U>(
  deps: LoginDeps,
  request: LoginRequest,
  protocol: UpstreamLogin<U>,
  signal: AbortSignal,
): Promise<LoginResult<U>> {
  let account: ResolvedAccount;
  try {
    account = await deps.authenticator.verify({
      username: request.username,
      password: request.password.reveal(),
      remoteAddress: request.remoteAddress,
    });
  } catch (err) {
    // Anything but a clear ProxyError from the authenticator is still a refusal, never an open door.
    if (isProxyError(err)) return { ok: false, error: err };
    return { ok: false, error: new ProxyError('bad-credentials', 'credential check failed', { cause: err }) };
  }

  let tokenOptions: TokenOptions = {};
  try {
    if (protocol.tokenResource) tokenOptions = { resource: await protocol.tokenResource(account) };
  } catch (err) {
    return { ok: false, error: asProxyError(err, 'token-unavailable'), account };
  }
  // Connecting and fetching the token overlap: both are network round trips.
  const connecting = protocol.connect(account, signal).then(
    (upstream) => ({ upstream }),
    (err: unknown) => ({ error: asProxyError(err, 'upstream-unavailable') }),
  );
  let token: string;
  try {
    token = (await deps.tokens.getAccessToken(account, tokenOptions)).token;
  } catch (err) {
    const connected = await connecting;
    if ('upstream' in connected) protocol.close(connected.upstream);
    return { ok: false, error: asProxyError(err, 'token-unavailable'), account };
  }
  const connected = await connecting;
  if ('error' in connected) return { ok: false, error: connected.error, account };
  let upstream = connected.upstream;

  try {
    const first = await protocol.authenticate(upstream, account, token);
    if (first.ok) return { ok: true, account, upstream: first.upstream ?? upstream, refreshed: false };

    // The upstream refused a token we believed valid: it may have been revoked or expired early.
    let fresh: string;
    try {
      fresh = (await deps.tokens.getAccessToken(account, { ...tokenOptions, forceRefresh: true })).token;
    } catch (err) {
      protocol.close(upstream);
      return { ok: false, error: asProxyError(err, 'token-unavailable'), account };
    }
    if (!first.reusable) {
      protocol.close(upstream);
      try {
        upstream = await protocol.connect(account, signal);
      } catch (err) {
        return { ok: false, error: asProxyError(err, 'upstream-unavailable'), account };
      }
    }
    const second = await protocol.authenticate(upstream, account, fresh);
    if (second.ok) return { ok: true, account, upstream: second.upstream ?? upstream, refreshed: true };
    protocol.close(upstream);
    return {
      ok: false,
      error: new ProxyError('upstream-rejected', `upstream refused a fresh token: ${second.reason}`, {
        detail: second.reason,
      }),
      account,
    };
  } catch (err) {
    protocol.close(upstream);
    return { ok: false, error: asProxyError(err, 'upstream-unavailable'), account };
  }
}

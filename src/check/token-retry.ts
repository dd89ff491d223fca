/**
 * The proxy's token rule, for the protocol checks that drive a library client: log in with the
 * token the TokenManager hands out; if the server refuses it, force one refresh and try exactly once
 * more (src/proxy/shared/login.ts does the same for the proxy's own upstream logins).
 */
import { ProxyError } from '../errors.js';
import type { CheckEnv } from './types.js';

export type LoginAttempt<T> = { ok: true; value: T } | { ok: false; reason: string };

export async function loginWithTokenRetry<T>(
  env: CheckEnv,
  what: string,
  attempt: (accessToken: string) => Promise<LoginAttempt<T>>,
): Promise<{ value: T; refreshed: boolean }> {
  const first = await attempt((await env.tokens.getAccessToken(env.account)).token);
  if (first.ok) return { value: first.value, refreshed: false };
  const fresh = await env.tokens.getAccessToken(env.account, { forceRefresh: true });
  const second = await attempt(fresh.token);
  if (second.ok) return { value: second.value, refreshed: true };
  throw new ProxyError('upstream-rejected', `${what} refused a fresh token: ${second.reason}`, {
    detail: second.reason,
  });
}

/** Rejects with a ProxyError 'upstream-unavailable' when `work` takes longer than `ms`. */
export async function withDeadline<T>(
  ms: number,
  what: string,
  work: Promise<T>,
  onTimeout: () => void,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(
        new ProxyError('upstream-unavailable', `${what} timed out after ${ms} ms`, { detail: 'timed out' }),
      );
    }, ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

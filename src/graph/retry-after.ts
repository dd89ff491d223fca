/**
 * `Retry-After` (RFC 9110 section 10.2.3) as Graph sends it with 429 and 503: delay-seconds, or an
 * HTTP-date. Whatever it says, the answer is whole seconds from now, at least 1 (a client told
 * "retry after 0" would retry at once and be throttled again), capped so a broken header cannot
 * block a mailbox for days.
 */
import { MAX_RETRY_AFTER_SECONDS } from './limits.js';

/** Seconds to wait, or undefined when the header is absent or unreadable. */
export function parseRetryAfter(
  value: string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (text === '') return undefined;
  let seconds: number;
  if (/^\d+$/.test(text)) {
    seconds = Number(text);
  } else {
    // Only the date forms HTTP allows contain a letter; a bare "-5" or "1.5" is not a date either.
    if (!/[a-z]/i.test(text)) return undefined;
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    seconds = Math.ceil((at - now) / 1000);
  }
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, seconds));
}

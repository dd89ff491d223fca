/**
 * Graph's answers as SendOutcomes: the one place that decides which HTTP status and Graph error code
 * becomes which SMTP reply class. Pure, so the table is tested without a server.
 */
import { GRAPH_CONSENT_MISSING, isProxyError } from '../errors.js';
import { MAX_REASON_CHARS } from './limits.js';
import type { SendOutcome } from './types.js';

/** A non-2xx answer from Graph, as far as we read it. */
export interface GraphErrorAnswer {
  status: number;
  /** `error.code` of Graph's JSON error body, if it had one. */
  code: string | undefined;
  /** `error.message` of the body. */
  message: string | undefined;
  /** From Retry-After, already parsed. */
  retryAfterSeconds: number | undefined;
}

/** One line of printable text, capped: Graph's messages end up in SMTP replies and log lines. */
export function safeReason(text: string): string {
  // eslint-disable-next-line no-control-regex
  const line = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return line.length > MAX_REASON_CHARS ? `${line.slice(0, MAX_REASON_CHARS - 3)}...` : line;
}

/** Reads Graph's `{error: {code, message}}` body; anything else leaves both undefined. */
export function readGraphError(
  status: number,
  body: string,
  retryAfterSeconds: number | undefined,
): GraphErrorAnswer {
  let code: string | undefined;
  let message: string | undefined;
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.code === 'string') code = parsed.error.code;
    if (typeof parsed.error?.message === 'string') message = parsed.error.message;
  } catch {
    // Not JSON: a proxy or load balancer in between answered; the status says enough.
  }
  return { status, code, message, retryAfterSeconds };
}

function describe(answer: GraphErrorAnswer): string {
  const parts = [`Graph answered ${answer.status}`];
  if (answer.code !== undefined) parts.push(answer.code);
  const head = parts.join(' ');
  return safeReason(answer.message === undefined ? head : `${head}: ${answer.message}`);
}

/**
 * The outcome of a failed request. A 401 reaches here only after the sender already retried with a
 * freshly issued token: Graph refusing a token the token endpoint just minted is not going to pass
 * by waiting (the grant lacks Graph, or the token is for another resource), so it is needs-consent,
 * and the reason says what to check.
 */
export function outcomeForGraphError(answer: GraphErrorAnswer): SendOutcome {
  const { status, code } = answer;
  const reason = describe(answer);
  if (code === 'ErrorSendAsDenied') return { kind: 'send-as-denied', reason };
  if (status === 413 || code === 'ErrorMessageSizeExceeded' || code === 'RequestEntityTooLarge') {
    return { kind: 'too-large', reason };
  }
  if (status === 401) {
    return {
      kind: 'needs-consent',
      reason: safeReason(
        `${reason}; a fresh token was refused too: consent again with the Graph scope (Mail.Send)`,
      ),
    };
  }
  if (status === 403) {
    return {
      kind: 'needs-consent',
      reason: safeReason(
        `${reason}; the account or application must be granted Mail.Send on Microsoft Graph`,
      ),
    };
  }
  if (status === 429 || status === 408 || status >= 500) {
    return answer.retryAfterSeconds === undefined
      ? { kind: 'temporary', reason }
      : { kind: 'temporary', reason, retryAfterSeconds: answer.retryAfterSeconds };
  }
  return { kind: 'rejected', reason };
}

/**
 * The outcome when no token could be had: a grant that needs consent stays so until someone acts;
 * anything else (token endpoint down, store trouble) may pass.
 */
export function outcomeForTokenError(err: unknown): SendOutcome {
  // Fixed words, as the login's replies have: the token endpoint's own text (AADSTS codes, the
  // connection's client id) is for the log, not for a mail client.
  if (isProxyError(err, 'needs-consent')) {
    return {
      kind: 'needs-consent',
      reason:
        err.detail === GRAPH_CONSENT_MISSING
          ? 'this account may not send through Microsoft Graph yet: the mailbox owner must consent again'
          : 'the mailbox owner must grant access again',
    };
  }
  return {
    kind: 'temporary',
    reason:
      'no access token for Microsoft Graph right now (the sign-in service is not answering); try again later',
  };
}

/** The outcome when the request itself failed: no answer is always worth another try. */
export function outcomeForNetworkError(kind: 'timeout' | 'aborted' | 'network', detail: string): SendOutcome {
  const reason =
    kind === 'timeout'
      ? `Graph did not answer in time (${detail})`
      : kind === 'aborted'
        ? 'the client went away before Graph answered'
        : `could not reach Graph: ${detail}`;
  return { kind: 'temporary', reason: safeReason(reason) };
}

/**
 * The HTTP requests of one send: a token for all of them, one forced refresh when Graph says 401
 * (the same rule as the SMTP login: an access token may be revoked or expire early), timeouts per
 * request, the client's hang-up aborting whatever is in flight, and Retry-After remembered for the
 * mailbox. A failure is thrown as `SendStopped` with its outcome, so the multi-step draft path reads
 * as a straight line; the sender turns it back into a return value.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import {
  outcomeForGraphError,
  outcomeForNetworkError,
  outcomeForTokenError,
  readGraphError,
} from './outcomes.js';
import { parseRetryAfter } from './retry-after.js';
import type { GraphThrottle } from './throttle.js';
import type { SendOutcome } from './types.js';

export class SendStopped extends Error {
  constructor(readonly outcome: SendOutcome) {
    super(outcome.kind);
    this.name = 'SendStopped';
  }
}

export interface GraphRequestContext {
  mailbox: string;
  accessToken(options: { forceRefresh: boolean }): Promise<string>;
  throttle: GraphThrottle;
  timeoutMs: number;
  fetch: typeof fetch;
  logger: Logger | undefined;
  /** The client's hang-up. */
  signal: AbortSignal;
}

export interface GraphRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
  /** False for upload-session PUTs: their URL is pre-authorized and Graph refuses a Bearer there. */
  authorize?: boolean;
  /** Use this signal instead of the client's (cleanup after the client left). */
  signal?: AbortSignal;
}

export interface GraphResponse {
  status: number;
  headers: Headers;
  text: string;
}

/** Sends requests for one message; holds its token between them. */
export class GraphRequester {
  private token: string | undefined;
  private refreshed = false;

  constructor(private readonly ctx: GraphRequestContext) {}

  private async getToken(forceRefresh: boolean): Promise<string> {
    try {
      this.token = await this.ctx.accessToken({ forceRefresh });
      return this.token;
    } catch (err) {
      // The reply says only what to do; what the token endpoint said is in the log.
      this.ctx.logger?.warn(
        { mailbox: this.ctx.mailbox, err: err instanceof Error ? err.message : String(err) },
        'no access token for Graph',
      );
      throw new SendStopped(outcomeForTokenError(err));
    }
  }

  /** A 2xx response, or SendStopped with what the failure means. */
  async request(req: GraphRequest): Promise<GraphResponse> {
    const authorize = req.authorize ?? true;
    for (;;) {
      const token = authorize ? (this.token ?? (await this.getToken(false))) : undefined;
      const response = await this.once(req, token);
      if (response.status >= 200 && response.status < 300) return response;
      if (response.status === 401 && authorize && !this.refreshed) {
        // Once per message, not per request: a second 401 after a fresh token is final.
        this.refreshed = true;
        this.ctx.logger?.info(
          { mailbox: this.ctx.mailbox },
          'graph refused the access token; refreshing once',
        );
        await this.getToken(true);
        continue;
      }
      const answer = readGraphError(
        response.status,
        response.text,
        parseRetryAfter(response.headers.get('retry-after')),
      );
      // The pre-authorized upload URL refusing us says nothing about the grant (it expired, or
      // Graph lost the session): worth another try, not a consent.
      const outcome: SendOutcome =
        !authorize && (answer.status === 401 || answer.status === 403)
          ? { kind: 'temporary', reason: `the attachment upload session was refused (${answer.status})` }
          : outcomeForGraphError(answer);
      if (outcome.kind === 'temporary' && outcome.retryAfterSeconds !== undefined) {
        this.ctx.throttle.record(this.ctx.mailbox, outcome.retryAfterSeconds);
      }
      this.ctx.logger?.warn(
        {
          mailbox: this.ctx.mailbox,
          method: req.method,
          status: response.status,
          graphCode: answer.code,
          requestId: response.headers.get('request-id') ?? undefined,
          retryAfterSeconds: answer.retryAfterSeconds,
        },
        'graph request failed',
      );
      throw new SendStopped(outcome);
    }
  }

  private async once(req: GraphRequest, token: string | undefined): Promise<GraphResponse> {
    const client = req.signal ?? this.ctx.signal;
    if (client.aborted) throw new SendStopped(outcomeForNetworkError('aborted', ''));
    const timeout = AbortSignal.timeout(this.ctx.timeoutMs);
    const headers: Record<string, string> = { ...req.headers, 'client-request-id': randomUUID() };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    try {
      const res = await this.ctx.fetch(req.url, {
        method: req.method,
        headers,
        body: req.body,
        signal: AbortSignal.any([client, timeout]),
        redirect: 'error',
      });
      // The body is read under the same signals: a server that stalls mid-answer times out too.
      const text = await res.text();
      return { status: res.status, headers: res.headers, text };
    } catch (err) {
      if (client.aborted) throw new SendStopped(outcomeForNetworkError('aborted', ''));
      if (timeout.aborted)
        throw new SendStopped(outcomeForNetworkError('timeout', `${this.ctx.timeoutMs} ms`));
      throw new SendStopped(outcomeForNetworkError('network', networkDetail(err)));
    }
  }
}

/** `ECONNREFUSED`, `ENOTFOUND` and the like: what undici hides in `cause`. Never the URL's query. */
function networkDetail(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return err instanceof Error ? err.message : 'network error';
}

/**
 * Every token-endpoint failure is classified here, once (pizauth's RefreshKind): the token manager,
 * the consent CLI and the web consent pages all act on `kind` and never look at HTTP details.
 *
 * transient: the network, a timeout, 408, 429, 5xx, or an answer that is not an OAuth error at all
 *   (an HTML page from a proxy in between says nothing about the grant), plus the two OAuth codes
 *   RFC 6749 §5.2/§4.1.2.1 define as passing (`server_error`, `temporarily_unavailable`).
 *   Keep every token, try again later.
 * permanent: any other OAuth error (`invalid_grant`, `invalid_client`, `unauthorized_client`, ...).
 *   The grant will not work again without the user (or the admin, for client errors).
 */
export type TokenFailureKind = 'transient' | 'permanent';

const TRANSIENT_OAUTH_ERRORS: ReadonlySet<string> = new Set(['server_error', 'temporarily_unavailable']);

export class TokenEndpointError extends Error {
  readonly kind: TokenFailureKind;
  readonly status: number | undefined;
  /** The OAuth `error` code, when the endpoint sent one. */
  readonly oauthError: string | undefined;
  readonly description: string | undefined;
  /** From a Retry-After header, when there was one. */
  readonly retryAfterMs: number | undefined;

  constructor(
    message: string,
    fields: {
      kind: TokenFailureKind;
      status?: number | undefined;
      oauthError?: string | undefined;
      description?: string | undefined;
      retryAfterMs?: number | undefined;
      cause?: unknown;
    },
  ) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = 'TokenEndpointError';
    this.kind = fields.kind;
    this.status = fields.status;
    this.oauthError = fields.oauthError;
    this.description = fields.description;
    this.retryAfterMs = fields.retryAfterMs;
  }

  /** One line, safe for logs and status (the endpoint's words, never a token). */
  get summary(): string {
    if (this.oauthError) {
      return `${this.oauthError}${this.description ? `: ${firstLine(this.description)}` : ''}`;
    }
    return this.message;
  }
}

function firstLine(text: string): string {
  const line = text.split(/\r?\n/)[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/**
 * OAuth errors about the client registration (its id, secret, allowed grant types), not about the
 * user's grant. They are permanent, but the grant itself is fine: once the admin fixes the connection
 * the same refresh token works again, so the token manager must not send users back to consent.
 */
const CLIENT_ERRORS: ReadonlySet<string> = new Set(['invalid_client', 'unauthorized_client']);

export function isClientError(err: TokenEndpointError): boolean {
  return err.oauthError !== undefined && CLIENT_ERRORS.has(err.oauthError);
}

export function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** Classifies an HTTP answer of a token or device endpoint. `body` is the parsed JSON, if any. */
export function classifyResponse(
  status: number,
  body: unknown,
  headers?: { get(name: string): string | null } | Record<string, unknown>,
): TokenEndpointError {
  const payload = body !== null && typeof body === 'object' ? (body as Record<string, unknown>) : undefined;
  const oauthError = typeof payload?.error === 'string' ? payload.error : undefined;
  const description = typeof payload?.error_description === 'string' ? payload.error_description : undefined;
  const retryAfterMs = parseRetryAfter(readHeader(headers, 'retry-after'));
  const kind: TokenFailureKind =
    isTransientStatus(status) || oauthError === undefined || TRANSIENT_OAUTH_ERRORS.has(oauthError)
      ? 'transient'
      : 'permanent';
  const what = oauthError
    ? `${oauthError}${description ? ` (${firstLine(description)})` : ''}`
    : 'no OAuth error';
  return new TokenEndpointError(`token endpoint answered HTTP ${status}: ${what}`, {
    kind,
    status,
    oauthError,
    description,
    retryAfterMs,
  });
}

/**
 * Anything a grant function can throw: our own errors pass through; simple-oauth2's Boom errors
 * (`err.output.statusCode`, `err.data.payload`, Wreck's 504 "Client request timeout"), fetch's
 * network errors and abort/timeout errors become TokenEndpointError.
 */
export function classifyTokenError(err: unknown): TokenEndpointError {
  if (err instanceof TokenEndpointError) return err;
  const e = err as {
    isBoom?: boolean;
    message?: string;
    name?: string;
    output?: { statusCode?: number };
    data?: {
      payload?: unknown;
      res?: { statusCode?: number; headers?: Record<string, unknown> } | null;
    } | null;
  };
  if (e?.isBoom) {
    const res = e.data?.res;
    if (res?.statusCode) return classifyResponse(res.statusCode, e.data?.payload, res.headers);
    // No response at all: Wreck's timeout (504 "Client request timeout") or a connection error.
    return new TokenEndpointError(`token endpoint unreachable: ${e.message ?? 'request failed'}`, {
      kind: 'transient',
      cause: err,
    });
  }
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') {
    return new TokenEndpointError('token endpoint did not answer in time', { kind: 'transient', cause: err });
  }
  // fetch() rejects with TypeError('fetch failed') whose cause carries the errno (ECONNREFUSED, ...).
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  const reason = cause?.code ?? cause?.message ?? e?.message ?? String(err);
  return new TokenEndpointError(`token request failed: ${reason}`, { kind: 'transient', cause: err });
}

function readHeader(
  headers: { get(name: string): string | null } | Record<string, unknown> | undefined,
  name: string,
): string | undefined {
  if (!headers) return undefined;
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  }
  const value = (headers as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

function parseRetryAfter(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

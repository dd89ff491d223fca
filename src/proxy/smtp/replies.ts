/**
 * Every reply the SMTP front sends itself, and the one place where a login failure becomes a reply
 * (RFC 4954 §6 and RFC 3463 codes). Single-line replies are strings without CRLF; the session adds it.
 */
import type { ProxyError } from '../../errors.js';
import type { Advertised, IntersectionRule } from '../shared/upstream-capabilities.js';

export const REPLY = {
  ok: '250 2.0.0 OK',
  bye: '221 2.0.0 Bye',
  readyForTls: '220 2.0.0 Ready to start TLS',
  authSucceeded: '235 2.7.0 Authentication successful',
  authRequired: '530 5.7.0 Authentication required',
  tlsRequired: '530 5.7.0 Must issue a STARTTLS command first',
  heloFirst: '503 5.5.1 Send EHLO first',
  unknownMechanism: '504 5.5.4 Unrecognized authentication mechanism',
  authCancelled: '501 5.7.0 Authentication cancelled',
  cannotDecode: '501 5.5.2 Cannot decode response',
  malformedPlain: '501 5.5.2 Malformed AUTH PLAIN response',
  badCredentials: '535 5.7.8 Authentication credentials invalid',
  temporaryFailure: '454 4.7.0 Temporary authentication failure, try again later',
  lineTooLong: '500 5.5.6 Line too long',
  unknownCommand: '500 5.5.2 Command not recognized',
  notImplemented: '502 5.5.1 Command not implemented',
  startTlsUnavailable: '502 5.5.1 STARTTLS not available',
  tlsActive: '503 5.5.1 TLS already active',
  tooManyCommands: '421 4.7.0 Too many commands before authentication, closing connection',
  tooManyFailures: '421 4.7.0 Too many failed authentication attempts, closing connection',
  idleTimeout: '421 4.4.2 Idle timeout, closing connection',
  http: '421 4.7.0 HTTP requests are not accepted here, closing connection',
  shutdown: '421 4.3.2 Service shutting down',
  /** For a client refused by the connection caps. */
  busy: '421 4.7.0 Too many connections, try again later',
  /** RFC 4954 AUTH LOGIN prompts: base64 "Username:" and "Password:". */
  loginUsername: '334 VXNlcm5hbWU6',
  loginPassword: '334 UGFzc3dvcmQ6',
  /** RFC 4954 §4: an empty server challenge is "334" followed by a space. */
  emptyChallenge: '334 ',
} as const;

/** The reply to a known command given arguments it cannot take. */
export function syntaxError(verb: 'EHLO' | 'HELO' | 'STARTTLS' | 'AUTH'): string {
  switch (verb) {
    case 'EHLO':
    case 'HELO':
      return `501 5.5.4 Syntax: ${verb} hostname`;
    case 'STARTTLS':
      return '501 5.5.4 Syntax: STARTTLS';
    case 'AUTH':
      return '501 5.5.4 Syntax: AUTH mechanism [initial-response]';
  }
}

export function greeting(serverName: string): string {
  return `220 ${serverName} ESMTP xoauth-proxy ready`;
}

export function heloReply(serverName: string): string {
  return `250 ${serverName}`;
}

/**
 * The upstream's EHLO keywords that may be advertised before AUTH: after it the client talks to the
 * upstream through a byte pipe, so every extension of the mail transaction works as the upstream
 * implements it. Never the upstream's AUTH or STARTTLS (those are our dialogue's), nor anything that
 * concerns the session itself (XCLIENT, VRFY, ETRN, BURL, which needs the upstream's IMAP).
 */
export const EHLO_PASS_THROUGH: IntersectionRule = {
  passThrough: new Set([
    'PIPELINING',
    '8BITMIME',
    'SMTPUTF8',
    'CHUNKING',
    'BINARYMIME',
    'DSN',
    'SIZE',
    'ENHANCEDSTATUSCODES',
    'DELIVERBY',
    'MT-PRIORITY',
    'FUTURERELEASE',
    'RRVS',
  ]),
  smallest: new Set(['SIZE']),
};

/**
 * Advertised while some reachable upstream's list is not known: only extensions every supported
 * upstream (Gmail, Exchange Online) has, because after AUTH the client talks to the upstream under
 * what it learned here.
 */
function fallbackExtensions(maxMessageSize: number): string[] {
  return ['PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES', `SIZE ${maxMessageSize}`];
}

/**
 * The EHLO reply: the extensions all reachable upstreams share (or the fixed fallback), then our own
 * STARTTLS and AUTH.
 */
export function ehloReply(
  serverName: string,
  options: { maxMessageSize: number; upstream: Advertised; offerStartTls: boolean; offerAuth: boolean },
): string {
  const extensions =
    options.upstream.kind === 'learned'
      ? options.upstream.extensions
      : fallbackExtensions(options.maxMessageSize);
  const lines = [serverName, ...extensions];
  if (options.offerStartTls) lines.push('STARTTLS');
  if (options.offerAuth) lines.push('AUTH PLAIN LOGIN');
  return lines.map((text, i) => `250${i === lines.length - 1 ? ' ' : '-'}${text}`).join('\r\n');
}

/** An SMTP reply as received from the upstream: code plus text lines, joined with CRLF by `format`. */
const UPSTREAM_REPLY = /^([2-5]\d\d)[ -](.*)$/;
const ENHANCED = /^\d\.\d{1,3}\.\d{1,3}(?: |$)/;

/** Keeps a reply line to printable text, so nothing from elsewhere can split or forge a reply. */
function clean(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, ' ').trim();
}

/**
 * Picks the reply for a failed login from the error's code (ProxyError), the single edge where the
 * program's errors meet SMTP.
 * - bad-credentials: 535 5.7.8, nothing more (no hint whether the user exists).
 * - needs-consent: 535 5.7.8 plus where the mailbox owner grants access.
 * - token-unavailable / upstream-unavailable: 454 4.7.0, temporary, so clients queue and retry.
 * - upstream-rejected: the upstream's own 5xx reply when it gave one (Exchange's
 *   `535 5.7.139 ... SmtpClientAuthentication is disabled for the Tenant` tells the admin what to fix).
 */
export function loginFailureReply(error: ProxyError, consentHint?: string): string {
  switch (error.code) {
    case 'bad-credentials':
      return REPLY.badCredentials;
    case 'needs-consent': {
      const hint = consentHint === undefined ? '' : ` ${clean(consentHint)}`;
      return `535 5.7.8 Account needs consent from the mailbox owner.${hint}`;
    }
    case 'upstream-rejected': {
      const passed = upstreamReplyText(error.detail);
      if (passed !== undefined) return passed;
      const why = error.detail === undefined ? '' : `: ${clean(error.detail)}`;
      return `535 5.7.8 Upstream server refused the login${why}`;
    }
    case 'token-unavailable':
    case 'upstream-unavailable':
    default:
      return REPLY.temporaryFailure;
  }
}

/**
 * The upstream's failure reply carried in an error's detail (lines separated by LF), re-emitted as a
 * well-formed multi-line reply with its own code; undefined unless every line is a 5xx reply line.
 */
export function upstreamReplyText(detail: string | undefined): string | undefined {
  if (detail === undefined) return undefined;
  const lines = detail.split(/\r?\n/).filter((l) => l.length > 0);
  if (lines.length === 0) return undefined;
  const parsed = lines.map((l) => UPSTREAM_REPLY.exec(l));
  const code = parsed[0]?.[1];
  if (code === undefined || !code.startsWith('5') || parsed.some((m) => m === null || m[1] !== code))
    return undefined;
  // We advertised ENHANCEDSTATUSCODES (RFC 2034), so lines from a server without them get one.
  const fallback = code === '535' ? '5.7.8' : `${code[0]}.0.0`;
  return parsed
    .map((m, i) => {
      const text = clean(m?.[2] ?? '');
      const withEnhanced = ENHANCED.test(text) ? text : `${fallback} ${text}`.trim();
      return `${code}${i === parsed.length - 1 ? ' ' : '-'}${withEnhanced}`;
    })
    .join('\r\n');
}

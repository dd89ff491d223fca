import { describe, expect, it } from 'vitest';
import { GRAPH_CONSENT_MISSING, ProxyError } from '../../../src/errors.js';
import { MAX_REASON_CHARS } from '../../../src/graph/limits.js';
import {
  outcomeForGraphError,
  outcomeForNetworkError,
  outcomeForTokenError,
  readGraphError,
  safeReason,
} from '../../../src/graph/outcomes.js';

const body = (code: string, message = 'text') => JSON.stringify({ error: { code, message } });

describe('outcomeForGraphError', () => {
  const cases: [number, string, number | undefined, string][] = [
    [403, body('ErrorSendAsDenied'), undefined, 'send-as-denied'],
    [403, body('ErrorAccessDenied', 'Access is denied.'), undefined, 'needs-consent'],
    [401, body('InvalidAuthenticationToken'), undefined, 'needs-consent'],
    [413, 'Request Entity Too Large', undefined, 'too-large'],
    [400, body('ErrorMessageSizeExceeded'), undefined, 'too-large'],
    [429, body('ApplicationThrottled'), 30, 'temporary'],
    [503, body('ServiceUnavailable'), undefined, 'temporary'],
    [500, '<html>oops</html>', undefined, 'temporary'],
    [504, '', undefined, 'temporary'],
    [408, '', undefined, 'temporary'],
    [400, body('ErrorInvalidRecipients', 'At least one recipient is not valid.'), undefined, 'rejected'],
    [404, body('ErrorInvalidUser'), undefined, 'rejected'],
  ];
  it.each(cases)('%i %s -> %s', (status, text, retry, kind) => {
    expect(outcomeForGraphError(readGraphError(status, text, retry)).kind).toBe(kind);
  });

  it('passes Retry-After on with temporary outcomes', () => {
    expect(outcomeForGraphError(readGraphError(429, body('TooManyRequests'), 12))).toEqual({
      kind: 'temporary',
      reason: 'Graph answered 429 TooManyRequests: text',
      retryAfterSeconds: 12,
    });
  });

  it('says what to grant on 403 and to consent again on a second 401', () => {
    expect(outcomeForGraphError(readGraphError(403, body('ErrorAccessDenied'), undefined))).toMatchObject({
      reason: expect.stringContaining('Mail.Send'),
    });
    expect(outcomeForGraphError(readGraphError(401, '', undefined))).toMatchObject({
      reason: expect.stringContaining('consent again'),
    });
  });

  it("keeps Graph's code and message on one capped line", () => {
    const o = outcomeForGraphError(
      readGraphError(400, body('ErrorX', 'bad\r\n250 OK\r\n' + 'x'.repeat(500)), undefined),
    );
    expect(o.kind).toBe('rejected');
    if (o.kind === 'sent') throw new Error('unreachable');
    expect(o.reason).not.toMatch(/[\r\n]/);
    expect(o.reason.length).toBeLessThanOrEqual(MAX_REASON_CHARS);
    expect(o.reason.startsWith('Graph answered 400 ErrorX: bad 250 OK')).toBe(true);
  });
});

describe('outcomeForTokenError', () => {
  it('needs-consent stays needs-consent; everything else is temporary; never the provider text', () => {
    const revoked = outcomeForTokenError(
      new ProxyError('needs-consent', 'm', {
        detail: 'invalid_grant: AADSTS70043: The refresh token has expired',
      }),
    );
    expect(revoked).toEqual({ kind: 'needs-consent', reason: 'the mailbox owner must grant access again' });
    expect(
      outcomeForTokenError(new ProxyError('needs-consent', 'm', { detail: GRAPH_CONSENT_MISSING })),
    ).toEqual({
      kind: 'needs-consent',
      reason: 'this account may not send through Microsoft Graph yet: the mailbox owner must consent again',
    });
    const down = outcomeForTokenError(
      new ProxyError('token-unavailable', 'down', {
        detail: 'token endpoint failed 0 s ago: invalid_client: AADSTS7000215 (connection m365)',
      }),
    );
    expect(down.kind).toBe('temporary');
    expect(JSON.stringify(down)).not.toMatch(/AADSTS|invalid_client|m365/);
    expect(outcomeForTokenError(new Error('boom')).kind).toBe('temporary');
  });
});

describe('outcomeForNetworkError', () => {
  it('is always temporary', () => {
    for (const k of ['timeout', 'aborted', 'network'] as const)
      expect(outcomeForNetworkError(k, 'x').kind).toBe('temporary');
  });
});

describe('safeReason', () => {
  it('removes control characters', () => {
    expect(safeReason('a\u0000b\tc\r\nd')).toBe('a b c d');
  });
});

import { describe, expect, it } from 'vitest';
import {
  classifyResponse,
  classifyTokenError,
  isClientError,
  TokenEndpointError,
} from '../../../src/oauth/grants/token-errors.js';

describe('token failure classification', () => {
  it.each([
    [500, { error: 'server_error' }, 'transient'],
    [502, undefined, 'transient'],
    [503, { error: 'invalid_grant' }, 'transient'], // the status wins: a 5xx says nothing about the grant
    [504, undefined, 'transient'],
    [429, { error: 'rate_limited' }, 'transient'],
    [408, undefined, 'transient'],
    [400, { error: 'temporarily_unavailable' }, 'transient'],
    [400, { error: 'server_error' }, 'transient'],
    [403, '<html>proxy says no</html>', 'transient'], // not an OAuth answer
    [400, { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' }, 'permanent'],
    [401, { error: 'invalid_client' }, 'permanent'],
    [400, { error: 'unauthorized_client' }, 'permanent'],
    [400, { error: 'invalid_scope' }, 'permanent'],
    [400, { error: 'interaction_required' }, 'permanent'],
  ] as const)('HTTP %i %j is %s', (status, body, kind) => {
    expect(classifyResponse(status, body).kind).toBe(kind);
  });

  it('keeps the OAuth error and a one-line summary without secrets', () => {
    const e = classifyResponse(400, {
      error: 'invalid_grant',
      error_description: 'AADSTS70000: The grant is expired.\r\nTrace ID: 123',
    });
    expect(e).toMatchObject({ oauthError: 'invalid_grant', status: 400 });
    expect(e.summary).toBe('invalid_grant: AADSTS70000: The grant is expired.');
  });

  it('reads Retry-After in seconds or as a date', () => {
    expect(classifyResponse(429, {}, new Headers({ 'retry-after': '7' })).retryAfterMs).toBe(7000);
    const later = new Date(Date.now() + 60_000).toUTCString();
    const ms = classifyResponse(503, {}, { 'retry-after': later }).retryAfterMs!;
    expect(ms).toBeGreaterThan(50_000);
    expect(ms).toBeLessThanOrEqual(60_000);
  });

  it('classifies simple-oauth2 Boom errors by their response', () => {
    const boom = Object.assign(new Error('Response Error: 400 Bad Request'), {
      isBoom: true,
      output: { statusCode: 400 },
      data: { payload: { error: 'invalid_grant' }, res: { statusCode: 400, headers: {} } },
    });
    expect(classifyTokenError(boom)).toMatchObject({ kind: 'permanent', oauthError: 'invalid_grant' });
    // Wreck's own timeout: a 504 Boom without a response.
    const timeout = Object.assign(new Error('Client request timeout'), {
      isBoom: true,
      output: { statusCode: 504 },
      data: null,
    });
    expect(classifyTokenError(timeout).kind).toBe('transient');
  });

  it('classifies fetch network errors and timeouts as transient', () => {
    const refused = new TypeError('fetch failed', {
      cause: Object.assign(new Error('x'), { code: 'ECONNREFUSED' }),
    });
    expect(classifyTokenError(refused)).toMatchObject({ kind: 'transient' });
    expect(classifyTokenError(refused).message).toContain('ECONNREFUSED');
    expect(classifyTokenError(new DOMException('timed out', 'TimeoutError')).kind).toBe('transient');
    expect(classifyTokenError(new DOMException('aborted', 'AbortError')).kind).toBe('transient');
  });

  it('tells client-registration errors from grant errors', () => {
    expect(isClientError(classifyResponse(401, { error: 'invalid_client' }))).toBe(true);
    expect(isClientError(classifyResponse(400, { error: 'unauthorized_client' }))).toBe(true);
    expect(isClientError(classifyResponse(400, { error: 'invalid_grant' }))).toBe(false);
    expect(isClientError(classifyResponse(500, undefined))).toBe(false);
  });

  it('passes its own errors through', () => {
    const e = new TokenEndpointError('x', { kind: 'permanent' });
    expect(classifyTokenError(e)).toBe(e);
  });
});

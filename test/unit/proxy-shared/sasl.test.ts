import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors.js';
import {
  decodeErrorChallenge,
  decodeLoginResponse,
  decodePlain,
  encodePlain,
  errorChallengeResponse,
  oauthBearerPayload,
  xoauth2Payload,
} from '../../../src/proxy/shared/sasl.js';
import { Secret } from '../../../src/proxy/shared/secret.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

describe('upstream SASL payloads', () => {
  it('builds the XOAUTH2 initial response exactly as Google documents it', () => {
    expect(xoauth2Payload('someuser@example.com', 'ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg')).toBe(
      // The example string from developers.google.com/gmail/imap/xoauth2-protocol.
      'dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==',
    );
  });

  it('builds the RFC 7628 OAUTHBEARER initial response with host and port', () => {
    const decoded = Buffer.from(
      oauthBearerPayload('user@example.com', 'tok', 'imap.example.com', 993),
      'base64',
    );
    expect(decoded.toString('utf8')).toBe(
      'n,a=user@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer tok\x01\x01',
    );
  });

  it('escapes , and = in the OAUTHBEARER authzid (RFC 5801 saslname)', () => {
    const decoded = Buffer.from(oauthBearerPayload('a,b=c', 't', 'h', 1), 'base64').toString();
    expect(decoded.startsWith('n,a=a=2Cb=3Dc,\x01')).toBe(true);
  });

  it('refuses a user or token that could add fields to the payload (^A, other controls, spaces)', () => {
    const injected = 'x@example.com\x01auth=Bearer stolen\x01\x01';
    for (const build of [
      (u: string, t: string) => xoauth2Payload(u, t),
      (u: string, t: string) => oauthBearerPayload(u, t, 'h', 1),
    ]) {
      expect(() => build(injected, 'tok')).toThrow(expect.objectContaining({ code: 'bad-credentials' }));
      expect(() => build('a b@example.com', 'tok')).toThrow(ProxyError);
      expect(() => build('a\r\n@example.com', 'tok')).toThrow(ProxyError);
      expect(() => build('', 'tok')).toThrow(ProxyError);
      expect(() => build('a@example.com', 'tok\x01auth=Bearer other')).toThrow(
        expect.objectContaining({ code: 'token-unavailable' }),
      );
      expect(() => build('a@example.com', 'tok\x7f')).toThrow(ProxyError);
    }
  });

  it('answers an error challenge with an empty line (XOAUTH2) or ^A (OAUTHBEARER)', () => {
    expect(errorChallengeResponse('xoauth2')).toBe('');
    expect(errorChallengeResponse('oauthbearer')).toBe('AQ==');
    expect(Buffer.from('AQ==', 'base64')).toEqual(Buffer.from([1]));
  });

  it("decodes Gmail's error challenge JSON and tolerates junk", () => {
    const challenge = b64('{"status":"401","schemes":"bearer mac","scope":"https://mail.google.com/"}');
    expect(decodeErrorChallenge(challenge)).toEqual({
      status: '401',
      schemes: 'bearer mac',
      scope: 'https://mail.google.com/',
    });
    expect(decodeErrorChallenge('!!!')).toBeUndefined();
    expect(decodeErrorChallenge(b64('"just a string"'))).toBeUndefined();
  });
});

describe('downstream PLAIN and LOGIN', () => {
  it('decodes PLAIN with and without authzid, UTF-8 passwords included', () => {
    expect(decodePlain(encodePlain('joe@example.com', 'pässwörd ✓'))).toEqual({
      authzid: '',
      username: 'joe@example.com',
      password: 'pässwörd ✓',
    });
    expect(decodePlain(encodePlain('joe', 'pw', 'joe'))).toMatchObject({ username: 'joe', authzid: 'joe' });
  });

  it.each([
    ['not base64', '***'],
    ['two fields', b64('joe\0pw')],
    ['four fields', b64('\0joe\0pw\0x')],
    ['empty password', b64('\0joe\0')],
    ['empty user', b64('\0\0pw')],
    ['someone else as authzid', b64('admin\0joe\0pw')],
  ])('refuses PLAIN with %s', (_name, message) => {
    expect(decodePlain(message)).toHaveProperty('error');
  });

  it('decodes LOGIN responses strictly', () => {
    expect(decodeLoginResponse(b64('joe'))).toBe('joe');
    expect(decodeLoginResponse('am9l!')).toBeUndefined();
  });
});

describe('Secret', () => {
  it('never prints its value', () => {
    const s = new Secret('hunter2');
    expect(String(s)).toBe('[secret]');
    expect(`${s}`).toBe('[secret]');
    expect(JSON.stringify({ s })).toBe('{"s":"[secret]"}');
    expect(inspect({ s })).not.toContain('hunter2');
    expect(s.reveal()).toBe('hunter2');
  });
});

import { describe, expect, it } from 'vitest';
import { decodeLoginField, decodePlain } from '../../../src/proxy/smtp/sasl.js';
import { b64, plain } from './front-harness.js';

describe('decodePlain (SMTP framing)', () => {
  it('reads authcid and password, with or without a matching authzid, in UTF-8', () => {
    expect(decodePlain(plain('alice@example.com', 'pässwörd ✓'))).toEqual({
      ok: true,
      value: { username: 'alice@example.com', password: 'pässwörd ✓' },
    });
    expect(decodePlain(` ${plain('alice', 'pw', 'alice')} `)).toEqual({
      ok: true,
      value: { username: 'alice', password: 'pw' },
    });
  });

  it.each([
    ['another authzid', plain('alice', 'pw', 'bob')],
    ['one NUL', b64('alice\0pw')],
    ['three NULs', b64('\0alice\0pw\0')],
    ['empty user', plain('', 'pw')],
    ['empty password', plain('alice', '')],
    ['"=" (empty response)', '='],
    ['empty line', ''],
  ])('%s is malformed', (_name, text) => {
    expect(decodePlain(text)).toEqual({ ok: false, failure: 'malformed' });
  });

  it.each(['***', 'AGEAYg=', 'AGE AYg==', 'AGEAYg==='])('%j is not base64', (text) => {
    expect(decodePlain(text)).toEqual({ ok: false, failure: 'bad-base64' });
  });
});

describe('decodeLoginField', () => {
  it('decodes UTF-8, "=" and the empty line as empty, and reports bad base64', () => {
    expect(decodeLoginField(b64('jürgen'))).toEqual({ ok: true, value: 'jürgen' });
    expect(decodeLoginField('=')).toEqual({ ok: true, value: '' });
    expect(decodeLoginField('')).toEqual({ ok: true, value: '' });
    expect(decodeLoginField('%%%')).toEqual({ ok: false, failure: 'bad-base64' });
    expect(decodeLoginField('dXNlcg')).toEqual({ ok: false, failure: 'bad-base64' });
  });
});

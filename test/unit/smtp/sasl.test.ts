import { describe, expect, it } from 'vitest';
import { decodeBase64, decodeLoginField, decodePlain } from '../../../src/proxy/smtp/sasl.js';
import { b64, plain } from './front-harness.js';

describe('decodeBase64', () => {
  it.each([
    ['=', ''],
    ['', ''],
    ['dXNlcg==', 'user'],
    ['dXNlcg', 'user'],
    ['  dXNlcg==  ', 'user'],
  ])('%j decodes', (text, expected) => {
    expect(decodeBase64(text)?.toString('utf8')).toBe(expected);
  });

  it.each(['dXNlcg=', 'dXNlc', 'not base64!', 'dX Nl', 'dXNlcg===', '=dXNl', 'dXNlcg==\x00'])(
    '%j is refused',
    (text) => {
      expect(decodeBase64(text)).toBeUndefined();
    },
  );
});

describe('decodePlain', () => {
  it('reads authcid and password, with or without a matching authzid, in UTF-8', () => {
    expect(decodePlain(plain('alice@example.com', 'pässwörd ✓'))).toEqual({
      ok: true,
      value: { username: 'alice@example.com', password: 'pässwörd ✓' },
    });
    expect(decodePlain(plain('alice', 'pw', 'alice'))).toEqual({
      ok: true,
      value: { username: 'alice', password: 'pw' },
    });
    expect(decodePlain(plain('alice', ''))).toEqual({ ok: true, value: { username: 'alice', password: '' } });
  });

  it.each([
    ['another authzid', plain('alice', 'pw', 'bob')],
    ['one NUL', b64('alice\0pw')],
    ['three NULs', b64('\0alice\0pw\0')],
    ['empty user', plain('', 'pw')],
    ['empty response', '='],
  ])('%s is malformed', (_name, text) => {
    expect(decodePlain(text)).toEqual({ ok: false, failure: 'malformed' });
  });

  it('bad base64 is told apart', () => {
    expect(decodePlain('***')).toEqual({ ok: false, failure: 'bad-base64' });
  });
});

describe('decodeLoginField', () => {
  it('decodes UTF-8 and reports bad base64', () => {
    expect(decodeLoginField(b64('jürgen'))).toEqual({ ok: true, value: 'jürgen' });
    expect(decodeLoginField('%%%')).toEqual({ ok: false, failure: 'bad-base64' });
  });
});

import { describe, expect, it } from 'vitest';
import { resolveAccount } from '../../../src/config/accounts.js';
import { GOOGLE, MICROSOFT, load, yaml } from './helpers.js';

const HASH = '$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA';

const config = load(
  yaml(
    'connections:',
    ...GOOGLE,
    ...MICROSOFT,
    'accounts:',
    '  - username: Alice@Example.com',
    '    connection: g',
    `    password: '${HASH}'`,
    '  - username: printer',
    '    email: Scanner@Example.com',
    '    connection: m',
    "  - username: '*@example.com'",
    '    connection: m',
    "  - username: '*@eu.example.com'",
    '    connection: g',
  ),
);

describe('resolveAccount', () => {
  it('matches an exact username case-insensitively and keeps what was typed', () => {
    const a = resolveAccount(config, 'alice@EXAMPLE.com');
    expect(a).toEqual({
      id: 'alice@example.com',
      username: 'alice@EXAMPLE.com',
      email: 'alice@EXAMPLE.com',
      connection: config.connections.get('g'),
      passwordHash: HASH,
      entry: 'Alice@Example.com',
    });
  });

  it('an exact entry wins over a pattern for the same domain', () => {
    expect(resolveAccount(config, 'alice@example.com')?.connection.name).toBe('g');
    expect(resolveAccount(config, 'bob@example.com')?.connection.name).toBe('m');
  });

  it('uses the configured email, lower-cased as the id', () => {
    const a = resolveAccount(config, 'Printer');
    expect(a?.email).toBe('Scanner@Example.com');
    expect(a?.id).toBe('scanner@example.com');
    expect(a?.entry).toBe('printer');
    expect(a?.passwordHash).toBeUndefined();
  });

  it('a pattern gives the typed username as the mailbox', () => {
    const a = resolveAccount(config, 'Bob@Example.COM');
    expect(a).toMatchObject({ id: 'bob@example.com', email: 'Bob@Example.COM', entry: '*@example.com' });
  });

  it('the most specific pattern wins, and a pattern covers subdomains', () => {
    expect(resolveAccount(config, 'carol@eu.example.com')?.entry).toBe('*@eu.example.com');
    expect(resolveAccount(config, 'dave@us.example.com')?.entry).toBe('*@example.com');
  });

  it('does not match other domains, look-alikes, or usernames without a domain', () => {
    expect(resolveAccount(config, 'eve@example.org')).toBeUndefined();
    expect(resolveAccount(config, 'eve@badexample.com')).toBeUndefined();
    expect(resolveAccount(config, 'eve')).toBeUndefined();
    expect(resolveAccount(config, '@example.com')).toBeUndefined();
    expect(resolveAccount(config, '*@example.com')).toBeUndefined();
    expect(resolveAccount(config, '')).toBeUndefined();
  });

  it('a pattern takes only a plain mailbox address: anything else is an unknown user', () => {
    for (const typed of [
      'x@example.com\x01auth=Bearer stolen\x01\x01user=y@example.com',
      'x@example.com\x01auth=Bearer t@example.com',
      'x\x01@example.com',
      'x\u0000y@example.com',
      'x\ty@example.com',
      'x y@example.com',
      '"x y"@example.com',
      'x"@example.com',
      'x\\y@example.com',
      'x*y@example.com',
      'x@y@example.com',
      '.x@example.com',
      'x..y@example.com',
      'x@exa mple.com',
      'x@example.com\r\nA1 LOGOUT',
      'x\u200b@example.com',
      `${'x'.repeat(65)}@example.com`,
    ]) {
      expect(resolveAccount(config, typed), JSON.stringify(typed)).toBeUndefined();
    }
  });

  it('plain addresses of any script still match a pattern', () => {
    for (const typed of ["o'brien+mail@example.com", 'first.last@eu.example.com', 'jörg@example.com']) {
      expect(resolveAccount(config, typed)?.email, typed).toBe(typed);
    }
  });
});

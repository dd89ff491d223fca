import { describe, expect, it } from 'vitest';
import { parseCommand } from '../../../src/proxy/pop3/parser.js';
import { syntaxError } from '../../../src/proxy/pop3/replies.js';

describe('POP3 command parser', () => {
  it.each([
    ['CAPA', { kind: 'capa' }],
    ['capa', { kind: 'capa' }],
    ['USER alice@example.com', { kind: 'user', name: 'alice@example.com' }],
    ['user  bob ', { kind: 'user', name: 'bob' }],
    ['USER', { kind: 'syntax-error', command: 'USER' }],
    // RFC 1939 §7: the password is the rest of the line, spaces (even trailing ones) included.
    ['PASS secret', { kind: 'pass', password: 'secret' }],
    ['PASS  two  spaces ', { kind: 'pass', password: ' two  spaces ' }],
    ['pass Pässwörd ✓', { kind: 'pass', password: 'Pässwörd ✓' }],
    ['PASS', { kind: 'syntax-error', command: 'PASS' }],
    ['AUTH', { kind: 'auth-list' }],
    ['AUTH plain', { kind: 'auth', mechanism: 'PLAIN' }],
    ['AUTH PLAIN AGEAYg==', { kind: 'auth', mechanism: 'PLAIN', initialResponse: 'AGEAYg==' }],
    ['AUTH PLAIN =', { kind: 'auth', mechanism: 'PLAIN', initialResponse: '=' }],
    ['AUTH XOAUTH2', { kind: 'auth', mechanism: 'XOAUTH2' }],
    ['AUTH PLAIN a b', { kind: 'syntax-error', command: 'AUTH' }],
    ['AUTH PLAIN not!base64', { kind: 'syntax-error', command: 'AUTH' }],
    ['AUTH WAY-TOO-LONG-MECHANISM-NAME', { kind: 'syntax-error', command: 'AUTH' }],
    ['STLS', { kind: 'stls' }],
    ['STLS now', { kind: 'syntax-error', command: 'STLS' }],
    ['QUIT', { kind: 'quit' }],
    ['APOP bob 0123456789abcdef', { kind: 'apop' }],
    ['STAT', { kind: 'needs-login' }],
    ['RETR 1', { kind: 'needs-login' }],
    ['NOOP', { kind: 'needs-login' }],
    ['UIDL', { kind: 'needs-login' }],
    ['TOP 1 10', { kind: 'needs-login' }],
    ['GET / HTTP/1.1', { kind: 'http' }],
    ['', { kind: 'empty' }],
    ['   ', { kind: 'empty' }],
    ['XYZZY', { kind: 'unknown' }],
  ] as const)('%j', (line, expected) => {
    expect(parseCommand(line)).toEqual(expected);
  });

  it.each([
    ['USER', '-ERR Syntax: USER name'],
    ['PASS', '-ERR Syntax: PASS password'],
    ['AUTH PLAIN a b', '-ERR Syntax: AUTH mechanism [initial-response]'],
    ['STLS now', '-ERR Syntax: STLS'],
  ])('the syntax error for %j says how to write it', (line, reply) => {
    const parsed = parseCommand(line);
    if (parsed.kind !== 'syntax-error') throw new Error(`not a syntax error: ${parsed.kind}`);
    expect(syntaxError(parsed.command)).toBe(reply);
  });
});

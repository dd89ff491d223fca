import { describe, expect, it } from 'vitest';
import { parseCommand } from '../../../src/proxy/smtp/parser.js';
import { syntaxError } from '../../../src/proxy/smtp/replies.js';

describe('parseCommand', () => {
  it.each([
    ['EHLO client.example', { kind: 'ehlo', name: 'client.example' }],
    ['ehlo [192.0.2.1]', { kind: 'ehlo', name: '[192.0.2.1]' }],
    ['EHLO My Printer', { kind: 'ehlo', name: 'My' }],
    ['HELO host', { kind: 'helo', name: 'host' }],
    ['STARTTLS', { kind: 'starttls' }],
    ['starttls  ', { kind: 'starttls' }],
    ['AUTH PLAIN', { kind: 'auth', mechanism: 'PLAIN' }],
    ['auth plain AGEAYg==', { kind: 'auth', mechanism: 'PLAIN', initialResponse: 'AGEAYg==' }],
    ['AUTH LOGIN dXNlcg==', { kind: 'auth', mechanism: 'LOGIN', initialResponse: 'dXNlcg==' }],
    ['AUTH CRAM-MD5', { kind: 'auth', mechanism: 'CRAM-MD5' }],
    ['RSET', { kind: 'rset' }],
    ['NOOP hello', { kind: 'noop' }],
    ['QUIT', { kind: 'quit' }],
    ['MAIL FROM:<a@b>', { kind: 'mail-transaction', verb: 'MAIL' }],
    ['rcpt to:<a@b>', { kind: 'mail-transaction', verb: 'RCPT' }],
    ['DATA', { kind: 'mail-transaction', verb: 'DATA' }],
    ['BDAT 100 LAST', { kind: 'mail-transaction', verb: 'BDAT' }],
    ['VRFY root', { kind: 'not-implemented', verb: 'VRFY' }],
    ['HELP', { kind: 'not-implemented', verb: 'HELP' }],
    ['GET / HTTP/1.1', { kind: 'http' }],
    ['POST /x HTTP/1.0', { kind: 'http' }],
    ['', { kind: 'empty' }],
    ['   ', { kind: 'empty' }],
    ['XYZZY secret', { kind: 'unknown' }],
  ])('%j', (line, expected) => {
    expect(parseCommand(line)).toEqual(expected);
  });

  it.each([
    ['EHLO', '501 5.5.4 Syntax: EHLO hostname'],
    ['HELO', '501 5.5.4 Syntax: HELO hostname'],
    ['EHLO \x01bad', '501 5.5.4 Syntax: EHLO hostname'],
    ['STARTTLS now', '501 5.5.4 Syntax: STARTTLS'],
    ['AUTH', '501 5.5.4 Syntax: AUTH mechanism [initial-response]'],
    ['AUTH PLAIN a b', '501 5.5.4 Syntax: AUTH mechanism [initial-response]'],
    ['AUTH PL@IN', '501 5.5.4 Syntax: AUTH mechanism [initial-response]'],
  ])('syntax error %j', (line, reply) => {
    const parsed = parseCommand(line);
    if (parsed.kind !== 'syntax-error') throw new Error(`not a syntax error: ${parsed.kind}`);
    expect(syntaxError(parsed.verb)).toBe(reply);
  });
});

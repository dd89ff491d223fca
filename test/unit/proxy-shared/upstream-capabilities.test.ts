import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Config, ConnectionConfig, UpstreamServer } from '../../../src/config/types.js';
import { CAPA_PASS_THROUGH } from '../../../src/proxy/pop3/replies.js';
import { EHLO_PASS_THROUGH, localExtensions } from '../../../src/proxy/smtp/replies.js';
import {
  intersectExtensions,
  UpstreamCapabilities,
  type CapabilityProbe,
} from '../../../src/proxy/shared/upstream-capabilities.js';

const SMTP_RULE = {
  passThrough: new Set(['PIPELINING', '8BITMIME', 'CHUNKING', 'SMTPUTF8', 'DSN', 'SIZE', 'DELIVERBY']),
  smallest: new Set(['SIZE']),
};

describe('intersectExtensions', () => {
  it('keeps what every list has, in the first list order, and only pass-through keywords', () => {
    const gmail = [
      'SIZE 35882577',
      '8BITMIME',
      'AUTH LOGIN PLAIN XOAUTH2',
      'ENHANCEDSTATUSCODES',
      'PIPELINING',
      'CHUNKING',
      'SMTPUTF8',
    ];
    const dovecot = [
      '8BITMIME',
      'AUTH PLAIN XOAUTH2',
      'BURL imap',
      'CHUNKING',
      'pipelining',
      'SIZE 40000000',
      'STARTTLS',
    ];
    expect(intersectExtensions([gmail, dovecot], SMTP_RULE)).toEqual({
      kind: 'learned',
      extensions: ['SIZE 35882577', '8BITMIME', 'PIPELINING', 'CHUNKING'],
    });
  });

  it('never passes AUTH, STARTTLS or anything outside the rule, even when all lists have it', () => {
    const list = ['AUTH PLAIN XOAUTH2', 'STARTTLS', 'XCLIENT ADDR', 'VRFY', 'DSN'];
    expect(intersectExtensions([list, list], SMTP_RULE)).toEqual({ kind: 'learned', extensions: ['DSN'] });
  });

  it('SIZE: the smallest limit wins; no number or 0 means no limit; junk drops it', () => {
    expect(intersectExtensions([['SIZE 100'], ['SIZE 50'], ['SIZE']], SMTP_RULE)).toEqual({
      kind: 'learned',
      extensions: ['SIZE 50'],
    });
    expect(intersectExtensions([['SIZE 0'], ['SIZE']], SMTP_RULE)).toEqual({
      kind: 'learned',
      extensions: ['SIZE'],
    });
    expect(intersectExtensions([['SIZE 10'], ['SIZE many']], SMTP_RULE)).toEqual({
      kind: 'learned',
      extensions: [],
    });
    expect(intersectExtensions([['SIZE 10'], ['DSN']], SMTP_RULE)).toEqual({
      kind: 'learned',
      extensions: [],
    });
  });

  it('other parameters must agree (case-insensitively) or the keyword is dropped', () => {
    expect(intersectExtensions([['DELIVERBY 240'], ['DELIVERBY 300']], SMTP_RULE)).toEqual({
      kind: 'learned',
      extensions: [],
    });
    expect(intersectExtensions([['DELIVERBY 240'], ['deliverby  240']], SMTP_RULE)).toEqual({
      kind: 'learned',
      extensions: ['DELIVERBY 240'],
    });
  });

  it('falls back when a reachable connection is unknown, or when none is reachable', () => {
    expect(intersectExtensions([['CHUNKING'], undefined], SMTP_RULE)).toEqual({ kind: 'fallback' });
    expect(intersectExtensions([], SMTP_RULE)).toEqual({ kind: 'fallback' });
  });

  it('one upstream with no extensions at all is known and empty, not unknown', () => {
    expect(intersectExtensions([['CHUNKING'], []], SMTP_RULE)).toEqual({ kind: 'learned', extensions: [] });
  });
});

describe("the protocols' pass-through rules", () => {
  it("SMTP: the upstream's AUTH, STARTTLS, BURL, XCLIENT and HELP never pass; the transaction ones do", () => {
    const dovecot = [
      '8BITMIME',
      'AUTH PLAIN XOAUTH2',
      'BINARYMIME',
      'BURL imap',
      'CHUNKING',
      'DSN',
      'ENHANCEDSTATUSCODES',
      'PIPELINING',
      'SIZE',
      'SMTPUTF8',
      'STARTTLS',
      'VRFY',
      'XCLIENT ADDR',
      'HELP',
    ];
    expect(intersectExtensions([dovecot], EHLO_PASS_THROUGH)).toEqual({
      kind: 'learned',
      extensions: [
        '8BITMIME',
        'BINARYMIME',
        'CHUNKING',
        'DSN',
        'ENHANCEDSTATUSCODES',
        'PIPELINING',
        'SIZE',
        'SMTPUTF8',
      ],
    });
  });

  it("POP3: the upstream's USER, SASL, STLS, CAPA and IMPLEMENTATION never pass (RESP-CODES are ours anyway)", () => {
    const dovecot = [
      'CAPA',
      'TOP',
      'UIDL',
      'RESP-CODES',
      'PIPELINING',
      'AUTH-RESP-CODE',
      'STLS',
      'USER',
      'SASL PLAIN XOAUTH2',
      'IMPLEMENTATION Dovecot',
      'UTF8',
    ];
    const gmail = [
      'USER',
      'RESP-CODES',
      'EXPIRE 0',
      'LOGIN-DELAY 300',
      'TOP',
      'UIDL',
      'X-GOOGLE-RICO',
      'SASL PLAIN XOAUTH2 OAUTHBEARER',
    ];
    expect(intersectExtensions([dovecot], CAPA_PASS_THROUGH)).toEqual({
      kind: 'learned',
      extensions: ['TOP', 'UIDL', 'PIPELINING'],
    });
    expect(intersectExtensions([dovecot, gmail], CAPA_PASS_THROUGH)).toEqual({
      kind: 'learned',
      extensions: ['TOP', 'UIDL'],
    });
  });
});

const server = (port: number): UpstreamServer => ({ host: 'mail.test', port, tls: 'implicit' });
function connection(name: string, smtp?: UpstreamServer): ConnectionConfig {
  return {
    name,
    provider: 'custom',
    clientId: 'id',
    grant: 'authorization_code',
    authorizeUrl: 'https://auth.test/a',
    tokenUrl: 'https://auth.test/t',
    scopes: [],
    authorizeParams: {},
    sasl: 'xoauth2',
    allowedIdentities: [],
    ...(smtp ? { smtp } : {}),
  };
}

function configWith(connections: ConnectionConfig[], accounts: Array<[string, string]>): Config {
  return {
    file: '/dev/null',
    listen: { imap: [], smtp: [{ host: '127.0.0.1', port: 0, tls: 'none' }], pop3: [], http: [] },
    store: { path: '/dev/null', keyFile: '/dev/null' },
    connections: new Map(connections.map((c) => [c.name, c])),
    accounts: accounts.map(([username, c]) => ({ username, connection: c })),
    settings: {} as Config['settings'],
    http: { consentHint: 'command' },
    notify: { minIntervalMs: 0 },
  };
}

describe('UpstreamCapabilities', () => {
  const logger = pino({ level: 'silent' });

  it('reaches the connections of the accounts (patterns included) that have a server for the protocol', () => {
    const a = connection('a', server(1));
    const b = connection('b', server(2));
    const imapOnly = connection('imap-only');
    const unused = connection('unused', server(3));
    const config = configWith(
      [a, b, imapOnly, unused],
      [
        ['x@a.test', 'a'],
        ['*@b.test', 'b'],
        ['y@a.test', 'a'],
        ['z@c.test', 'imap-only'],
      ],
    );
    const caps = new UpstreamCapabilities({ config, probes: {}, logger });
    expect(caps.reachable('smtp').map((r) => r.connection.name)).toEqual(['a', 'b']);
    expect(caps.lists('smtp')).toEqual([undefined, undefined]);
    caps.learn('smtp', a, ['CHUNKING']);
    expect(caps.lists('smtp')).toEqual([['CHUNKING'], undefined]);
    caps.loggedIn('smtp', b, ['DSN']);
    expect(caps.lists('smtp')).toEqual([['CHUNKING'], ['DSN']]);
  });

  it('probes at refresh, keeps what it knew when a probe fails, probes an unknown connection after a login', async () => {
    const a = connection('a', server(1));
    const b = connection('b', server(2));
    const config = configWith(
      [a, b],
      [
        ['x@a.test', 'a'],
        ['y@b.test', 'b'],
      ],
    );
    const calls: string[] = [];
    let failA = false;
    const probe: CapabilityProbe = (c) => {
      calls.push(c.name);
      if (c.name === 'b' || failA) return Promise.reject(new Error('down'));
      return Promise.resolve(['PIPELINING', 'CHUNKING']);
    };
    const caps = new UpstreamCapabilities({ config, probes: { smtp: probe }, logger });
    await caps.refresh();
    expect(calls).toEqual(['a', 'b']);
    expect(caps.lists('smtp')).toEqual([['PIPELINING', 'CHUNKING'], undefined]);
    failA = true;
    await caps.refresh();
    expect(caps.lists('smtp')).toEqual([['PIPELINING', 'CHUNKING'], undefined]);
    calls.length = 0;
    caps.loggedIn('smtp', a);
    expect(calls).toEqual([]);
    caps.loggedIn('smtp', b);
    expect(calls).toEqual(['b']);
  });

  it('forgets a connection a reload removed or moved', async () => {
    const a = connection('a', server(1));
    const config = configWith([a], [['x@a.test', 'a']]);
    const caps = new UpstreamCapabilities({
      config,
      probes: { smtp: () => Promise.resolve(['DSN']) },
      logger,
    });
    await caps.refresh();
    expect(caps.known('smtp', a)).toEqual(['DSN']);
    const moved = connection('a', server(9));
    config.connections.set('a', moved);
    expect(caps.lists('smtp')).toEqual([undefined]);
  });

  it('connections that send through Graph count with the local transaction: graph instead of SMTP, auto with both', () => {
    const local = localExtensions(35_000_000);
    const relayed = connection('relayed', server(1));
    const graphOnly = { ...connection('graph-only', server(2)), send: 'graph' as const };
    const auto = { ...connection('auto', server(3)), send: 'auto' as const };
    const config = configWith(
      [relayed, graphOnly, auto],
      [
        ['a@relayed.test', 'relayed'],
        ['b@graph.test', 'graph-only'],
      ],
    );
    const caps = new UpstreamCapabilities({ config, probes: {}, logger, localSmtp: () => local });
    // The Graph connection's SMTP server is never probed: its logins never reach it.
    expect(caps.reachable('smtp').map((r) => r.connection.name)).toEqual(['relayed']);
    caps.learn('smtp', relayed, ['PIPELINING', 'DSN', 'CHUNKING', 'SIZE 157286400']);
    expect(caps.lists('smtp')).toEqual([['PIPELINING', 'DSN', 'CHUNKING', 'SIZE 157286400'], local]);
    // What a client is offered before login works on both paths: no DSN, the smaller SIZE.
    expect(intersectExtensions(caps.lists('smtp'), EHLO_PASS_THROUGH)).toEqual({
      kind: 'learned',
      extensions: ['PIPELINING', 'CHUNKING', 'SIZE 35000000'],
    });
    config.accounts.push({ username: 'c@auto.test', connection: 'auto' });
    expect(caps.reachable('smtp').map((r) => r.connection.name)).toEqual(['relayed', 'auto']);
    expect(caps.lists('smtp')).toEqual([
      ['PIPELINING', 'DSN', 'CHUNKING', 'SIZE 157286400'],
      undefined,
      local,
    ]);
  });
});

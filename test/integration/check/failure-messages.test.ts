/**
 * The table from error to sentence (src/check/failure.ts) and the protocol selection, without
 * sockets: each row is an error shape one of the clients really produces.
 */
import { describe, expect, it } from 'vitest';
import { describeFailure, ProtocolSelectionError, selectProtocols } from '../../../src/check/index.js';
import type { ConnectionConfig, ResolvedAccount } from '../../../src/config/types.js';
import { ProxyError } from '../../../src/errors.js';

const connection: ConnectionConfig = {
  name: 'm365',
  provider: 'microsoft',
  clientId: 'id',
  grant: 'authorization_code',
  authorizeUrl: 'https://login.example/authorize',
  tokenUrl: 'https://login.example/token',
  scopes: ['x'],
  authorizeParams: {},
  sasl: 'xoauth2',
  allowedIdentities: [],
  imap: { host: 'outlook.office365.com', port: 993, tls: 'implicit' },
  smtp: { host: 'smtp.office365.com', port: 587, tls: 'starttls' },
  pop3: { host: 'outlook.office365.com', port: 995, tls: 'implicit' },
};
const account: ResolvedAccount = {
  id: 'bob@contoso.example',
  username: 'bob@contoso.example',
  email: 'bob@contoso.example',
  connection,
  entry: '*@contoso.example',
};
const where = { protocol: 'imap' as const, account, server: 'outlook.office365.com:993' };

function sysError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe('describeFailure', () => {
  it.each([
    [
      new ProxyError('needs-consent', 'x', { detail: 'invalid_grant: revoked' }),
      'needs-consent',
      'needs consent: run xoauth-proxy consent-link bob@contoso.example (invalid_grant: revoked)',
    ],
    [
      new ProxyError('token-unavailable', 'x', {
        detail: 'token endpoint answered HTTP 503: no OAuth error',
      }),
      'token-unavailable',
      'token endpoint unreachable (temporary, every token kept; try again later): token endpoint answered HTTP 503: no OAuth error',
    ],
    [
      new ProxyError('token-unavailable', 'x', { detail: 'invalid_client: AADSTS7000215 bad secret' }),
      'oauth-client',
      /^the provider refused the OAuth client of connection m365 \(invalid_client: AADSTS7000215 bad secret\): check its clientId/,
    ],
    [
      new ProxyError('token-unavailable', 'Token store unavailable: SQLITE_BUSY'),
      'store',
      'token store problem: Token store unavailable: SQLITE_BUSY',
    ],
    [
      new ProxyError('upstream-unavailable', 'upstream h:1: connection error: self-signed certificate', {
        cause: sysError('DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'),
      }),
      'tls',
      /^TLS certificate of outlook\.office365\.com:993 is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate\): if the server uses a private CA, set caFile on connection m365/,
    ],
    [
      sysError('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames"),
      'tls',
      /^TLS certificate of outlook\.office365\.com:993 does not name this host \(ERR_TLS_CERT_ALTNAME_INVALID/,
    ],
    [sysError('CERT_HAS_EXPIRED', 'certificate has expired'), 'tls', /is not valid now \(CERT_HAS_EXPIRED/],
    [
      sysError('ERR_SSL_WRONG_VERSION_NUMBER', 'wrong version number'),
      'tls',
      /^TLS handshake with outlook\.office365\.com:993 failed \(ERR_SSL_WRONG_VERSION_NUMBER.*check the port and tls:/,
    ],
    // nodemailer keeps the socket's code in originalCode and puts its own stage code in code.
    [
      Object.assign(new Error('connect ECONNREFUSED'), { code: 'ESOCKET', originalCode: 'ECONNREFUSED' }),
      'unreachable',
      'cannot connect to outlook.office365.com:993: connection refused',
    ],
    [sysError('ENOTFOUND', 'getaddrinfo ENOTFOUND'), 'unreachable', /cannot resolve the host/],
    [sysError('CONNECT_TIMEOUT', 'Connection timed out'), 'timeout', /did not answer in time/],
    [
      new ProxyError('upstream-unavailable', 'IMAP login timed out after 20000 ms', { detail: 'timed out' }),
      'timeout',
      /did not answer in time/,
    ],
    [
      new ProxyError('upstream-rejected', 'x', { detail: 'AUTHENTICATE failed.' }),
      'rejected',
      /^IMAP login refused even with a freshly refreshed token \(AUTHENTICATE failed\.\): check that IMAP is enabled/,
    ],
    [new Error('something odd'), 'protocol', 'IMAP server outlook.office365.com:993: something odd'],
  ] as const)('%s -> %s', (err, kind, message) => {
    const failure = describeFailure(err, where);
    expect(failure.kind).toBe(kind);
    if (typeof message === 'string') expect(failure.message).toBe(message);
    else expect(failure.message).toMatch(message);
  });

  it('SMTP 5.7.139 is an action for the tenant admin; elsewhere it is just a refusal', () => {
    const err = new ProxyError('upstream-rejected', 'x', {
      detail: '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.',
    });
    const smtp = describeFailure(err, { ...where, protocol: 'smtp' });
    expect(smtp.kind).toBe('smtp-auth-disabled');
    expect(smtp.message).toMatch(/^SMTP AUTH disabled for the tenant \(5\.7\.139\): enable it/);
    expect(smtp.message).toContain(
      'Set-CASMailbox bob@contoso.example -SmtpClientAuthenticationDisabled $false',
    );
  });

  it('an app-only connection whose registration is refused is the admin s problem, not a consent', () => {
    const appOnly = { ...account, connection: { ...connection, grant: 'client_credentials' as const } };
    const err = new ProxyError('needs-consent', 'The app registration of connection m365 was refused (...)');
    expect(describeFailure(err, { ...where, account: appOnly })).toEqual({
      kind: 'oauth-client',
      message: 'The app registration of connection m365 was refused (...)',
    });
  });
});

describe('selectProtocols', () => {
  const noPop = { listen: { imap: [], smtp: [], pop3: [], http: [] } };
  const withPop = {
    listen: { imap: [], smtp: [], pop3: [{ host: '127.0.0.1', port: 1110, tls: 'none' as const }], http: [] },
  };

  it('by default: IMAP and SMTP; POP3 only when the proxy serves POP3', () => {
    expect(selectProtocols(noPop, account, {})).toEqual(['imap', 'smtp']);
    expect(selectProtocols(withPop, account, {})).toEqual(['imap', 'smtp', 'pop3']);
  });

  it('flags pick exactly those, in the fixed order', () => {
    expect(selectProtocols(noPop, account, { pop3: true, imap: true })).toEqual(['imap', 'pop3']);
  });

  it('a flag for a protocol the connection has no server for is a usage error', () => {
    const imapOnly = { ...account, connection: { ...connection, smtp: undefined, pop3: undefined } };
    expect(() => selectProtocols(noPop, imapOnly, { smtp: true })).toThrow(ProtocolSelectionError);
    expect(() => selectProtocols(noPop, imapOnly, { smtp: true })).toThrow(
      /connection m365 has no smtp server/,
    );
    const none = {
      ...account,
      connection: { ...connection, imap: undefined, smtp: undefined, pop3: undefined },
    };
    expect(() => selectProtocols(withPop, none, {})).toThrow(/names no IMAP, SMTP or POP3 server/);
  });
});

import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/errors.js';
import { loadConfig } from '../../../src/config/load.js';
import { isProxyError } from '../../../src/errors.js';
import { GOOGLE, MICROSOFT, errorOf, yaml } from './helpers.js';

describe('config errors name file:line:col, the key, the problem and the fix', () => {
  it('YAML syntax error', () => {
    expect(errorOf(yaml('connections:', '  - name: [g', 'accounts: []'))).toMatchInlineSnapshot(
      `"cfg.yaml:3:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]. Check indentation, colons, quotes and brackets around this spot."`,
    );
  });
  it('duplicate YAML key', () => {
    expect(errorOf(yaml('settings:', '  refreshMargin: 1m', '  refreshMargin: 2m'))).toMatchInlineSnapshot(
      `"cfg.yaml:3:3: this key appears twice in the same mapping. Keep only one of them."`,
    );
  });
  it('unquoted *@domain pattern (a YAML alias)', () => {
    expect(
      errorOf(
        yaml('connections:', ...GOOGLE, 'accounts:', '  - username: *@example.com', '    connection: g'),
      ),
    ).toBe(
      'cfg.yaml:7:15: "*@example.com" is read as a YAML alias (a leading * refers to an &anchor). Quote it: \'*@example.com\'.',
    );
  });
  it('several YAML documents', () => {
    expect(errorOf(yaml('accounts: []', '---', 'connections: []'))).toBe(
      'cfg.yaml:2:1: the file holds more than one YAML document. Remove the extra "---" line.',
    );
  });
  it('a number where text is expected', () => {
    expect(errorOf(yaml('connections:', '  - name: g', '    provider: google', '    clientId: 12345'))).toBe(
      'cfg.yaml:4:5: connections[0].clientId: must be the OAuth client id, as text (put quotes around a number).',
    );
  });
  it('unknown key', () => {
    expect(errorOf(yaml('connections:', ...GOOGLE, '    clientSecert: x'))).toMatchInlineSnapshot(
      `"cfg.yaml:6:5: connections[0].clientSecert: unknown key "clientSecert". Did you mean "clientSecret"?"`,
    );
  });
  it('unknown key in another case', () => {
    expect(errorOf(yaml('connections:', ...GOOGLE, '    ClientID: x'))).toBe(
      'cfg.yaml:6:5: connections[0].ClientID: unknown key "ClientID". Did you mean "clientId"?',
    );
  });
  it('unknown key with nothing close lists what is allowed', () => {
    expect(errorOf(yaml('listen:', '  imap:', '    - port: 1143', '      address: 0.0.0.0'))).toBe(
      'cfg.yaml:4:7: listen.imap[0].address: unknown key "address". Remove it; allowed here: host, port, tls, cert, key, minVersion, allowFrom, proxyProtocol, trustedProxies.',
    );
    expect(errorOf(yaml('settings:', '  loginLimiter:', '    lockTime: 1m'))).toBe(
      'cfg.yaml:3:5: settings.loginLimiter.lockTime: unknown key "lockTime". Remove it; allowed here: freeFailures, baseDelay, maxDelay, lockAfter, addressLockAfter, lockDuration, window.',
    );
  });
  it('http.trustedProxies takes only addresses and CIDR ranges', () => {
    expect(errorOf(yaml('http:', '  trustedProxies: [10.0.0.0/8, proxy.local]'))).toMatch(
      /^cfg\.yaml:2:\d+: http\.trustedProxies\[1\]: "proxy\.local" is not an IP address or CIDR range\. Write an address or a network/,
    );
  });
  it('unknown top-level key', () => {
    expect(errorOf(yaml('listen: {}', 'acounts: []'))).toMatchInlineSnapshot(
      `"cfg.yaml:2:1: acounts: unknown key "acounts". Did you mean "accounts"?"`,
    );
  });
  it('missing required key', () => {
    expect(errorOf(yaml('connections:', '  - name: g', '    provider: google'))).toMatchInlineSnapshot(
      `"cfg.yaml:2:5: connections[0].clientId: is missing. Add it."`,
    );
  });
  it('bad enum value', () => {
    expect(errorOf(yaml('connections:', ...GOOGLE, '    grant: implicit'))).toMatchInlineSnapshot(
      `"cfg.yaml:6:5: connections[0].grant: must be one of: authorization_code, device_code, client_credentials, service_account."`,
    );
  });
  it('bad duration', () => {
    expect(errorOf(yaml('settings:', '  refreshMargin: 10 minutes'))).toMatchInlineSnapshot(
      `"cfg.yaml:2:3: settings.refreshMargin: must be a duration such as "30s", "10m", "6h", "1d" or a number of milliseconds."`,
    );
  });
  it('bad port', () => {
    expect(errorOf(yaml('listen:', '  imap:', '    - port: 70000'))).toMatchInlineSnapshot(
      `"cfg.yaml:3:7: listen.imap[0].port: must be a port number (0-65535; 0 picks a free port)."`,
    );
  });
  it('microsoft connection with projectId', () => {
    expect(errorOf(yaml('connections:', ...MICROSOFT, '    projectId: p'))).toMatchInlineSnapshot(
      `"cfg.yaml:6:5: connections[0].projectId: a Microsoft connection has no projectId (that is a Google setting). Remove projectId; a Microsoft connection names its tenant with tenantId."`,
    );
  });
  it('google connection with device_code', () => {
    expect(errorOf(yaml('connections:', ...GOOGLE, '    grant: device_code'))).toMatchInlineSnapshot(
      `"cfg.yaml:6:5: connections[0].grant: Google does not allow the device_code grant for Gmail scopes (it answers invalid_scope). Use grant: authorization_code (the default) and consent in a browser."`,
    );
  });
  it('google connection with client_credentials', () => {
    expect(errorOf(yaml('connections:', ...GOOGLE, '    grant: client_credentials'))).toMatchInlineSnapshot(
      `"cfg.yaml:6:5: connections[0].grant: Google has no client_credentials grant for Gmail. Use grant: authorization_code (the default) and let each mailbox owner consent."`,
    );
  });
  it('delegated microsoft connection without offline_access', () => {
    expect(
      errorOf(
        yaml(
          'connections:',
          ...MICROSOFT,
          '    scopes:',
          '      - https://outlook.office.com/IMAP.AccessAsUser.All',
        ),
      ),
    ).toMatchInlineSnapshot(
      `"cfg.yaml:6:5: connections[0].scopes: a delegated Microsoft connection needs the offline_access scope (without it there is no refresh token, and the mailbox owner must consent again every hour). Add offline_access to scopes."`,
    );
  });
  it.each(['common', 'organizations', 'consumers'])('client_credentials with tenant %s', (tenant) => {
    expect(
      errorOf(
        yaml(
          'connections:',
          '  - name: app',
          '    provider: azure',
          '    clientId: mid',
          '    clientSecret: s',
          '    grant: client_credentials',
          `    tenantId: ${tenant}`,
        ),
      ),
    ).toBe(
      `cfg.yaml:7:5: connections[0].tenantId: grant client_credentials needs a tenant-specific tenantId, not ${tenant}. Set tenantId to your tenant's GUID or domain (Entra admin center, Overview).`,
    );
  });
  it('client_credentials without tenantId', () => {
    expect(
      errorOf(
        yaml(
          'connections:',
          '  - name: app',
          '    provider: microsoft',
          '    clientId: mid',
          '    clientSecret: s',
          '    grant: client_credentials',
        ),
      ),
    ).toMatchInlineSnapshot(
      `"cfg.yaml:2:5: connections[0]: grant client_credentials needs a tenant-specific tenantId, not common. Set tenantId to your tenant's GUID or domain (Entra admin center, Overview)."`,
    );
  });
  it('invalid tenant', () => {
    expect(
      errorOf(
        yaml(
          'connections:',
          '  - name: m',
          '    provider: microsoft',
          '    clientId: x',
          '    tenantId: not a tenant',
        ),
      ),
    ).toMatchInlineSnapshot(
      `"cfg.yaml:5:5: connections[0].tenantId: "not a tenant" is not a Microsoft tenant. Use the tenant id (a GUID) or a verified domain, or common, organizations or consumers."`,
    );
  });
  it('account naming an unknown connection', () => {
    expect(
      errorOf(
        yaml(
          'connections:',
          ...GOOGLE,
          ...MICROSOFT,
          'accounts:',
          '  - username: a@x.com',
          '    connection: gmail',
        ),
      ),
    ).toMatchInlineSnapshot(
      `"cfg.yaml:12:5: accounts[0].connection: unknown connection "gmail". Use one of: g, m."`,
    );
  });
  it('account naming a connection when there are none', () => {
    expect(
      errorOf(yaml('accounts:', '  - username: a@x.com', '    connection: gmail')),
    ).toMatchInlineSnapshot(
      `"cfg.yaml:3:5: accounts[0].connection: unknown connection "gmail". Define it under connections: first."`,
    );
  });
  it('two accounts claiming the same username (case-insensitive)', () => {
    expect(
      errorOf(
        yaml(
          'connections:',
          ...GOOGLE,
          'accounts:',
          '  - username: alice@example.com',
          '    connection: g',
          '  - username: Alice@Example.com',
          '    connection: g',
        ),
      ),
    ).toMatchInlineSnapshot(
      `"cfg.yaml:9:5: accounts[1].username: username "Alice@Example.com" is already claimed by accounts[0].username (line 7). Each username may appear only once; remove or rename one of them."`,
    );
  });
  it('plain-text password', () => {
    expect(
      errorOf(
        yaml(
          'connections:',
          ...GOOGLE,
          'accounts:',
          '  - username: a@x.com',
          '    connection: g',
          '    password: hunter2',
        ),
      ),
    ).toMatchInlineSnapshot(
      `"cfg.yaml:9:5: accounts[0].password: password is not a scrypt hash (plain-text passwords are not allowed). Run \`xoauth-proxy hash-password\` and paste its output here."`,
    );
  });
  it('listener with TLS but no cert/key', () => {
    expect(
      errorOf(yaml('listen:', '  imap:', '    - port: 993', '      tls: implicit')),
    ).toMatchInlineSnapshot(
      `"cfg.yaml:4:7: listen.imap[0].tls: tls: implicit needs a certificate and a private key. Add cert: and key: with the paths of PEM files, or set tls: none."`,
    );
  });
  it('duplicate connection names', () => {
    expect(errorOf(yaml('connections:', ...GOOGLE, ...GOOGLE))).toMatchInlineSnapshot(
      `"cfg.yaml:6:5: connections[1].name: connection name "g" is already used by connections[0]. Give each connection a unique name."`,
    );
  });
  it('unknown env var without default', () => {
    expect(
      errorOf(yaml('connections:', '  - name: g', '    provider: google', '    clientId: ${GOOGLE_ID}')),
    ).toMatchInlineSnapshot(
      `"cfg.yaml:4:5: connections[0].clientId: environment variable GOOGLE_ID is not set. Set GOOGLE_ID, or give a default with \${GOOGLE_ID:-value}."`,
    );
  });
  it('missing secret file', () => {
    expect(
      errorOf(
        yaml(
          'connections:',
          '  - name: g',
          '    provider: google',
          '    clientId: x',
          '    clientSecretFile: nope.txt',
        ),
      ),
    ).toMatchInlineSnapshot(
      `"cfg.yaml:5:5: connections[0].clientSecretFile: cannot read client secret file nope.txt (ENOENT). Check the path (relative paths start at the config file) and its permissions."`,
    );
  });
  it('reports several schema problems at once', () => {
    expect(errorOf(yaml('listen:', '  imap:', '    - port: -1', '      tls: maybe'))).toMatchInlineSnapshot(`
      "cfg.yaml:3:7: listen.imap[0].port: must be a port number (0-65535; 0 picks a free port).
      cfg.yaml:4:7: listen.imap[0].tls: must be one of: none, starttls, implicit."
    `);
  });
  it('is a ProxyError with code config', () => {
    let err: unknown;
    try {
      loadConfig('/nonexistent/cfg.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(isProxyError(err, 'config')).toBe(true);
    expect((err as Error).message).toMatchInlineSnapshot(
      `"/nonexistent/cfg.yaml: cannot read the config file (ENOENT). Check the path, or pass another file with --config <file>."`,
    );
  });
});

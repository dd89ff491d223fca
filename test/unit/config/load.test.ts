import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/load.js';
import { configJsonSchema } from '../../../src/config/schema.js';
import { GOOGLE, MICROSOFT, errorOf, load, tempDir, yaml } from './helpers.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const TLS = join(ROOT, 'test/fixtures/config/tls');

describe('loadConfig', () => {
  it('loads config.example.yaml from a fresh clone without any environment', () => {
    const config = loadConfig(join(ROOT, 'config.example.yaml'), { env: {} });
    expect([...config.connections.keys()]).toEqual(['google', 'microsoft']);
    expect(config.accounts.map((a) => a.username)).toEqual(['alice@gmail.com', '*@example.com']);
    for (const protocol of ['imap', 'smtp', 'pop3', 'http'] as const) {
      expect(config.listen[protocol].length).toBeGreaterThan(0);
      for (const l of config.listen[protocol]) expect(l.host).toBe('127.0.0.1');
    }
    expect(config.store).toMatchObject({ path: join(ROOT, 'data/tokens.db') });
  });

  it('the committed config.schema.json equals the generated schema', () => {
    const committed: unknown = JSON.parse(readFileSync(join(ROOT, 'config.schema.json'), 'utf8'));
    expect(committed).toEqual(configJsonSchema());
  });

  it('the JSON schema rejects unknown keys and describes defaults', () => {
    const schema = configJsonSchema() as {
      additionalProperties: boolean;
      properties: Record<string, { properties?: Record<string, { default?: unknown }> }>;
    };
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties.settings?.properties?.refreshMargin?.default).toBe('10m');
  });

  it('an empty file is a valid (empty) config with all defaults', () => {
    const config = load('');
    expect(config.connections.size).toBe(0);
    expect(config.listen).toEqual({ imap: [], smtp: [], pop3: [], http: [] });
    expect(config.settings).toEqual({
      refreshMarginMs: 600_000,
      keepAliveIntervalMs: 86_400_000,
      tokenRequestTimeoutMs: 30_000,
      credentialCacheMs: 300_000,
      shutdownGraceMs: 30_000,
      limits: {
        maxLineLength: 8192,
        maxLiteralSize: 8192,
        maxCommandsBeforeLogin: 20,
        maxFailedLoginsPerConnection: 3,
        preAuthIdleTimeoutMs: 60_000,
        postLoginIdleTimeoutMs: 300_000,
        upstreamConnectTimeoutMs: 20_000,
        smtpMaxMessageSize: 35_000_000,
        messageMemory: 280_000_000,
        maxConnections: 10_000,
        maxConnectionsPerAddress: 50,
        loginDeadlineMs: 300_000,
      },
      loginLimiter: {
        freeFailures: 3,
        baseDelayMs: 500,
        maxDelayMs: 2_000,
        lockAfter: 10,
        addressLockAfter: 30,
        lockMs: 900_000,
        windowMs: 900_000,
      },
      upstreamPool: { enabled: true, maxPerHost: 4, maxIdleMs: 20_000 },
    });
    expect(config.http).toEqual({ consentHint: 'command', metrics: true });
    expect(config.notify).toEqual({ minIntervalMs: 3_600_000 });
  });

  it('parses durations as strings or milliseconds', () => {
    const config = load(
      yaml(
        'settings:',
        '  refreshMargin: 90s',
        '  keepAliveInterval: 1h30m',
        '  tokenRequestTimeout: 2500',
        '  credentialCache: 0',
        '  limits:',
        '    preAuthIdleTimeout: 500ms',
        '  loginLimiter:',
        '    lockDuration: 1d',
      ),
    );
    expect(config.settings.refreshMarginMs).toBe(90_000);
    expect(config.settings.keepAliveIntervalMs).toBe(5_400_000);
    expect(config.settings.tokenRequestTimeoutMs).toBe(2500);
    expect(config.settings.credentialCacheMs).toBe(0);
    expect(config.settings.limits.preAuthIdleTimeoutMs).toBe(500);
    expect(config.settings.loginLimiter.lockMs).toBe(86_400_000);
  });

  it('reads settings.upstreamPool, and `enabled: false` turns the pool off', () => {
    const config = load(
      yaml('settings:', '  upstreamPool:', '    enabled: false', '    maxPerHost: 2', '    maxIdle: 5s'),
    );
    expect(config.settings.upstreamPool).toEqual({ enabled: false, maxPerHost: 2, maxIdleMs: 5_000 });
    expect(() => load(yaml('settings:', '  upstreamPool:', '    maxIdel: 5s'))).toThrow(/maxIdel/);
    expect(() => load(yaml('settings:', '  upstreamPool:', '    maxPerHost: 0'))).toThrow(/greater than 0/);
  });

  it('resolves store paths against the config file directory', () => {
    const dir = tempDir({ 'cfg.yaml': yaml('store:', '  path: db/t.db', '  keyFile: /abs/key') });
    const config = loadConfig(join(dir, 'cfg.yaml'), { env: {} });
    expect(config.file).toBe(join(dir, 'cfg.yaml'));
    expect(config.store).toEqual({ path: join(dir, 'db/t.db'), keyFile: '/abs/key' });
  });
});

describe('environment and file expansion', () => {
  it('expands ${VAR}, ${VAR:-default} and the $${ escape in values', () => {
    const config = load(
      yaml(
        'connections:',
        '  - name: g',
        '    provider: google',
        '    clientId: ${ID}',
        '    clientSecret: pre-${SECRET:-fallback}-$${LITERAL}',
        'listen:',
        '  imap:',
        '    - port: ${IMAP_PORT:-1143}',
      ),
      { ID: 'the-id', IMAP_PORT: '2143' },
    );
    const g = config.connections.get('g');
    expect(g?.clientId).toBe('the-id');
    expect(g?.clientSecret).toBe('pre-fallback-${LITERAL}');
    expect(config.listen.imap[0]?.port).toBe(2143);
  });

  it('an empty client secret means a public client', () => {
    const config = load(yaml('connections:', ...MICROSOFT, '    clientSecret: ${MS_SECRET:-}'));
    expect(config.connections.get('m')).not.toHaveProperty('clientSecret');
  });

  it('uses the default when the variable is set but empty', () => {
    const config = load(
      yaml('connections:', '  - name: g', '    provider: google', '    clientId: ${ID:-dflt}'),
      {
        ID: '',
      },
    );
    expect(config.connections.get('g')?.clientId).toBe('dflt');
  });

  it('never expands keys, and leaves a lone $ alone', () => {
    const config = load(
      yaml(
        'connections:',
        '  - name: g',
        '    provider: google',
        '    clientId: a$b$$c',
        '    clientSecret: ${S}',
      ),
      { S: '${NOT_AGAIN}' },
    );
    expect(config.connections.get('g')?.clientId).toBe('a$b$$c');
    expect(config.connections.get('g')?.clientSecret).toBe('${NOT_AGAIN}');
  });

  it('reports an unclosed ${ and a bad variable name', () => {
    expect(errorOf(yaml('http:', '  publicUrl: http://${HOST'))).toBe(
      'cfg.yaml:2:3: http.publicUrl: "${" is not closed. Close it with "}", or write "$${" for a literal "${".',
    );
    expect(errorOf(yaml('http:', '  publicUrl: ${1HOST}'))).toBe(
      'cfg.yaml:2:3: http.publicUrl: "${1HOST}" is not a valid variable reference. Use ${NAME} or ${NAME:-default} with a name of letters, digits and "_", or write "$${" for a literal "${".',
    );
  });

  it('reads *File secrets relative to the config file, dropping one trailing newline', () => {
    const config = load(
      yaml(
        'connections:',
        '  - name: g',
        '    provider: google',
        '    clientId: x',
        '    clientSecretFile: secret.txt',
        '    caFile: ca.pem',
        'http:',
        '  adminPasswordFile: admin.txt',
      ),
      {},
      { 'secret.txt': 's3cret\n', 'ca.pem': 'PEM', 'admin.txt': 'tok\n' },
    );
    expect(config.connections.get('g')?.clientSecret).toBe('s3cret');
    expect(config.connections.get('g')?.ca).toBe('PEM');
    expect(config.http).toEqual({ adminPassword: 'tok', consentHint: 'admin', metrics: true });
  });

  it('reads listener cert/key PEM files and checks they are a pair', () => {
    const config = load(
      yaml(
        'listen:',
        '  imap:',
        '    - port: 1993',
        '      tls: implicit',
        `      cert: ${TLS}/cert.pem`,
        `      key: ${TLS}/key.pem`,
        '      minVersion: TLSv1.2',
      ),
    );
    const l = config.listen.imap[0];
    expect(l?.cert).toContain('-----BEGIN CERTIFICATE-----');
    expect(l?.key).toContain('PRIVATE KEY-----');
    expect(l?.minVersion).toBe('TLSv1.2');
    const msg = errorOf(
      yaml(
        'listen:',
        '  imap:',
        '    - port: 1993',
        '      tls: implicit',
        `      cert: ${TLS}/cert.pem`,
        `      key: ${TLS}/other-key.pem`,
      ),
    );
    expect(msg).toMatch(
      /^cfg\.yaml:5:7: listen\.imap\[0\]\.cert: cert and key are not a usable pair \(.+\)\. Point cert at the PEM certificate chain and key at its matching PEM private key\.$/,
    );
  });

  it('rejects two listeners on the same address', () => {
    expect(errorOf(yaml('listen:', '  imap:', '    - port: 1143', '  pop3:', '    - port: 1143'))).toBe(
      'cfg.yaml:5:7: listen.pop3[0].port: 127.0.0.1:1143 is already used by listen.imap[0] (line 3). Give each listener its own port.',
    );
  });

  it('rejects STARTTLS on http', () => {
    expect(
      errorOf(
        yaml(
          'listen:',
          '  http:',
          '    - port: 8443',
          '      tls: starttls',
          `      cert: ${TLS}/cert.pem`,
          `      key: ${TLS}/key.pem`,
        ),
      ),
    ).toBe('cfg.yaml:4:7: listen.http[0].tls: HTTP has no STARTTLS. Use tls: implicit (HTTPS) or tls: none.');
  });
});

describe('provider presets and overrides', () => {
  it('google preset', () => {
    const g = load(yaml('connections:', ...GOOGLE)).connections.get('g');
    expect(g).toEqual({
      name: 'g',
      provider: 'google',
      clientId: 'gid',
      clientSecret: 'gsecret',
      grant: 'authorization_code',
      authorizeUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
      tokenUrl: 'https://oauth2.googleapis.com/token',
      userinfoUrl: 'https://openidconnect.googleapis.com/v1/userinfo',
      scopes: ['https://mail.google.com/', 'openid', 'email', 'profile'],
      authorizeParams: { access_type: 'offline', prompt: 'consent' },
      imap: { host: 'imap.gmail.com', port: 993, tls: 'implicit' },
      smtp: { host: 'smtp.gmail.com', port: 465, tls: 'implicit' },
      pop3: { host: 'pop.gmail.com', port: 995, tls: 'implicit' },
      sasl: 'xoauth2',
      allowedIdentities: [],
    });
  });

  it('microsoft preset per tenant (azure is an alias)', () => {
    const m = load(
      yaml(
        'connections:',
        '  - name: m',
        '    provider: azure',
        '    clientId: mid',
        '    tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47',
      ),
    ).connections.get('m');
    const base = 'https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0';
    expect(m).toMatchObject({
      provider: 'microsoft',
      grant: 'authorization_code',
      authorizeUrl: `${base}/authorize`,
      tokenUrl: `${base}/token`,
      deviceCodeUrl: `${base}/devicecode`,
      scopes: [
        'https://outlook.office.com/IMAP.AccessAsUser.All',
        'https://outlook.office.com/POP.AccessAsUser.All',
        'https://outlook.office.com/SMTP.Send',
        'offline_access',
        'openid',
        'email',
        'profile',
      ],
      authorizeParams: {},
      imap: { host: 'outlook.office365.com', port: 993, tls: 'implicit' },
      smtp: { host: 'smtp.office365.com', port: 587, tls: 'starttls' },
      pop3: { host: 'outlook.office365.com', port: 995, tls: 'implicit' },
      sasl: 'xoauth2',
    });
    expect(m?.clientSecret).toBeUndefined();
    expect(m?.userinfoUrl).toBeUndefined();
  });

  it('microsoft defaults to tenant common; consumers submit via smtp-mail.outlook.com', () => {
    const config = load(
      yaml(
        'connections:',
        '  - name: a',
        '    provider: microsoft',
        '    clientId: x',
        '  - name: b',
        '    provider: microsoft',
        '    clientId: x',
        '    tenantId: consumers',
        '    grant: device_code',
      ),
    );
    expect(config.connections.get('a')?.tenantId).toBe('common');
    expect(config.connections.get('a')?.tokenUrl).toBe(
      'https://login.microsoftonline.com/common/oauth2/v2.0/token',
    );
    expect(config.connections.get('b')?.smtp?.host).toBe('smtp-mail.outlook.com');
    expect(config.connections.get('b')?.grant).toBe('device_code');
  });

  it('microsoft national clouds', () => {
    const config = load(
      yaml(
        'connections:',
        '  - name: us',
        '    provider: microsoft',
        '    clientId: x',
        '    tenantId: contoso.us',
        '    cloud: usgov',
        '  - name: cn',
        '    provider: microsoft',
        '    clientId: x',
        '    tenantId: contoso.cn',
        '    cloud: china',
      ),
    );
    expect(config.connections.get('us')).toMatchObject({
      tokenUrl: 'https://login.microsoftonline.us/contoso.us/oauth2/v2.0/token',
      imap: { host: 'outlook.office365.us' },
      smtp: { host: 'smtp.office365.us' },
    });
    expect(config.connections.get('us')?.scopes[0]).toBe(
      'https://outlook.office365.us/IMAP.AccessAsUser.All',
    );
    expect(config.connections.get('cn')).toMatchObject({
      tokenUrl: 'https://login.partner.microsoftonline.cn/contoso.cn/oauth2/v2.0/token',
      scopes: ['https://partner.outlook.cn/.default', 'offline_access', 'openid', 'email', 'profile'],
      imap: { host: 'partner.outlook.cn' },
    });
  });

  it('microsoft client_credentials uses the .default scope and a tenant token URL', () => {
    const app = load(
      yaml(
        'connections:',
        '  - name: app',
        '    provider: microsoft',
        '    clientId: x',
        '    clientSecret: s',
        '    tenantId: contoso.onmicrosoft.com',
        '    grant: client_credentials',
      ),
    ).connections.get('app');
    expect(app?.scopes).toEqual(['https://outlook.office365.com/.default']);
    expect(app?.tokenUrl).toBe('https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token');
  });

  it('client_credentials needs a secret', () => {
    expect(
      errorOf(
        yaml(
          'connections:',
          '  - name: app',
          '    provider: microsoft',
          '    clientId: x',
          '    tenantId: contoso.com',
          '    grant: client_credentials',
        ),
      ),
    ).toBe(
      'cfg.yaml:2:5: connections[0]: grant client_credentials needs a client secret or a certificate. Set clientSecret, clientSecretFile or clientCertificate.',
    );
  });

  it('every override wins over the preset', () => {
    const g = load(
      yaml(
        'connections:',
        ...GOOGLE,
        '    authorizeUrl: https://auth.example/authorize',
        '    tokenUrl: https://auth.example/token',
        '    userinfoUrl: https://auth.example/userinfo',
        '    scopes: [https://mail.google.com/]',
        '    authorizeParams: { prompt: select_account, hd: example.com }',
        '    imap: { port: 1993 }',
        '    smtp: { port: 587, tls: starttls }',
        '    pop3: { host: pop.example.net }',
        '    sasl: oauthbearer',
        '    allowedIdentities: [Boss@Example.com]',
      ),
    ).connections.get('g');
    expect(g).toMatchObject({
      authorizeUrl: 'https://auth.example/authorize',
      tokenUrl: 'https://auth.example/token',
      userinfoUrl: 'https://auth.example/userinfo',
      scopes: ['https://mail.google.com/'],
      authorizeParams: { access_type: 'offline', prompt: 'select_account', hd: 'example.com' },
      imap: { host: 'imap.gmail.com', port: 1993, tls: 'implicit' },
      smtp: { host: 'smtp.gmail.com', port: 587, tls: 'starttls' },
      pop3: { host: 'pop.example.net', port: 995, tls: 'implicit' },
      sasl: 'oauthbearer',
      allowedIdentities: ['boss@example.com'],
    });
  });

  it('custom connection with everything given', () => {
    const c = load(
      yaml(
        'connections:',
        '  - name: c',
        '    provider: custom',
        '    clientId: x',
        '    authorizeUrl: http://127.0.0.1:9000/authorize',
        '    tokenUrl: http://127.0.0.1:9000/token',
        '    scopes: [mail]',
        '    imap: { host: 127.0.0.1, port: 1993 }',
        '    smtp: { host: 127.0.0.1, port: 2525 }',
        '    ca: PEMDATA',
      ),
    ).connections.get('c');
    expect(c).toMatchObject({
      provider: 'custom',
      authorizeUrl: 'http://127.0.0.1:9000/authorize',
      scopes: ['mail'],
      imap: { host: '127.0.0.1', port: 1993, tls: 'implicit' },
      smtp: { host: '127.0.0.1', port: 2525, tls: 'starttls' },
      sasl: 'xoauth2',
      ca: 'PEMDATA',
      authorizeParams: {},
    });
    expect(c?.pop3).toBeUndefined();
  });

  it('custom connection lists every missing piece', () => {
    expect(errorOf(yaml('connections:', '  - name: c', '    provider: custom', '    clientId: x'))).toBe(
      [
        'cfg.yaml:2:5: connections[0].tokenUrl: a custom connection needs tokenUrl. Add the token endpoint URL.',
        'cfg.yaml:2:5: connections[0].authorizeUrl: a custom connection needs authorizeUrl. Add the authorization endpoint URL.',
        'cfg.yaml:2:5: connections[0].scopes: a custom connection needs scopes. List the scopes to request.',
        'cfg.yaml:2:5: connections[0]: a custom connection needs at least one mail server. Add imap:, smtp: or pop3: with host and port.',
      ].join('\n'),
    );
  });

  it('custom client_credentials needs no authorizeUrl; device_code needs deviceCodeUrl', () => {
    const c = load(
      yaml(
        'connections:',
        '  - name: c',
        '    provider: custom',
        '    clientId: x',
        '    clientSecret: s',
        '    grant: client_credentials',
        '    tokenUrl: https://idp.example/token',
        '    scopes: [mail]',
        '    imap: { host: mail.example, port: 993 }',
      ),
    ).connections.get('c');
    expect(c?.authorizeUrl).toBe('');
    expect(
      errorOf(
        yaml(
          'connections:',
          '  - name: c',
          '    provider: custom',
          '    clientId: x',
          '    grant: device_code',
          '    tokenUrl: https://idp.example/token',
          '    scopes: [mail]',
          '    imap: { host: mail.example, port: 993 }',
        ),
      ),
    ).toBe(
      'cfg.yaml:2:5: connections[0].deviceCodeUrl: grant device_code needs deviceCodeUrl. Add the device authorization endpoint URL.',
    );
  });

  it('custom servers need host and port', () => {
    expect(
      errorOf(
        yaml(
          'connections:',
          '  - name: c',
          '    provider: custom',
          '    clientId: x',
          '    authorizeUrl: https://idp.example/a',
          '    tokenUrl: https://idp.example/token',
          '    scopes: [mail]',
          '    imap: { port: 993 }',
        ),
      ),
    ).toBe(
      'cfg.yaml:8:5: connections[0].imap.host: a server without a preset needs host. Give host and port (and tls: implicit or starttls).',
    );
  });

  it('endpoints must be https (http only on loopback)', () => {
    expect(errorOf(yaml('connections:', ...GOOGLE, '    tokenUrl: http://idp.example/token'))).toBe(
      'cfg.yaml:6:5: connections[0].tokenUrl: http:// is not allowed here. Use an https URL (plain http only for 127.0.0.1 or localhost).',
    );
    expect(errorOf(yaml('connections:', ...GOOGLE, '    tokenUrl: not a url'))).toBe(
      'cfg.yaml:6:5: connections[0].tokenUrl: "not a url" is not a URL. Write the full URL, such as https://login.example.com/oauth2/token.',
    );
  });

  it('google-only and microsoft-only keys stay with their provider', () => {
    expect(errorOf(yaml('connections:', ...GOOGLE, '    tenantId: common', '    cloud: usgov'))).toBe(
      [
        'cfg.yaml:6:5: connections[0].tenantId: a Google connection has no tenantId (that is a Microsoft setting). Remove tenantId.',
        'cfg.yaml:7:5: connections[0].cloud: a Google connection has no cloud (that is a Microsoft setting). Remove cloud.',
      ].join('\n'),
    );
    expect(errorOf(yaml('connections:', ...MICROSOFT, '    sasl: oauthbearer'))).toBe(
      'cfg.yaml:6:5: connections[0].sasl: Microsoft supports only XOAUTH2, not OAUTHBEARER. Remove sasl, or set sasl: xoauth2.',
    );
  });

  it('a delegated microsoft connection with offline_access in its own scopes is fine', () => {
    const m = load(
      yaml(
        'connections:',
        ...MICROSOFT,
        '    scopes: [https://outlook.office.com/IMAP.AccessAsUser.All, offline_access]',
      ),
    ).connections.get('m');
    expect(m?.scopes).toEqual(['https://outlook.office.com/IMAP.AccessAsUser.All', 'offline_access']);
  });

  it('secret and secret file are exclusive', () => {
    expect(
      errorOf(yaml('connections:', ...GOOGLE, '    clientSecretFile: s.txt'), {}, { 's.txt': 'x' }),
    ).toBe(
      'cfg.yaml:6:5: connections[0].clientSecretFile: clientSecret and clientSecretFile are both set. Keep only one of them.',
    );
  });
});

describe('accounts', () => {
  it('keeps accounts as written, password hashes included', () => {
    const hash = '$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA';
    const config = load(
      yaml(
        'connections:',
        ...GOOGLE,
        'accounts:',
        '  - username: alice',
        '    email: alice@gmail.com',
        '    connection: g',
        `    password: '${hash}'`,
        "  - username: '*@example.com'",
        '    connection: g',
      ),
    );
    expect(config.accounts).toEqual([
      { username: 'alice', email: 'alice@gmail.com', connection: 'g', password: hash },
      { username: '*@example.com', connection: 'g' },
    ]);
  });

  it('a username that is not an address needs an email', () => {
    expect(
      errorOf(yaml('connections:', ...GOOGLE, 'accounts:', '  - username: alice', '    connection: g')),
    ).toBe(
      'cfg.yaml:7:5: accounts[0].username: username "alice" is not an email address, so the mailbox is unknown. Add email: with the mailbox address.',
    );
  });

  it('patterns must be *@domain and cannot set email', () => {
    expect(
      errorOf(
        yaml(
          'connections:',
          ...GOOGLE,
          'accounts:',
          "  - username: 'a*@example.com'",
          '    connection: g',
          "  - username: '*@example.org'",
          '    email: shared@example.org',
          '    connection: g',
        ),
      ),
    ).toBe(
      [
        'cfg.yaml:7:5: accounts[0].username: "a*@example.com" is not a valid pattern. A pattern is "*@" followed by a domain, such as *@example.com.',
        'cfg.yaml:10:5: accounts[1].email: a pattern account cannot have one email. Remove email; each user of the domain logs in to their own mailbox.',
      ].join('\n'),
    );
  });
});

describe('listeners on port 0', () => {
  it('several listeners may ask for any free port', () => {
    const config = load(yaml('listen:', '  imap:', '    - port: 0', '  smtp:', '    - port: 0'));
    expect(config.listen.imap[0]?.port).toBe(0);
    expect(config.listen.smtp[0]?.port).toBe(0);
  });
});

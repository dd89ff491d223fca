import { describe, expect, it } from 'vitest';
import type { ConnectionConfig, ResolvedAccount } from '../../../src/config/types.js';
import type { Authenticator } from '../../../src/credentials/types.js';
import { ProxyError } from '../../../src/errors.js';
import type { MessageSender } from '../../../src/graph/types.js';
import { silentLogger } from '../../../src/log.js';
import type { TokenOptions, TokenProvider } from '../../../src/oauth/types.js';
import { performLogin, type UpstreamLogin } from '../../../src/proxy/shared/login.js';
import { Secret } from '../../../src/proxy/shared/secret.js';
import type { GraphSending } from '../../../src/proxy/shared/types.js';
import { graphAwareLogin } from '../../../src/proxy/smtp/graph-login.js';
import { isLocalUpstream } from '../../../src/proxy/shared/session.js';
import { SendRouter, SWITCH_FOR_MS, smtpAuthDisabled } from '../../../src/proxy/smtp/send-route.js';
import type { SmtpUpstream } from '../../../src/proxy/smtp/upstream.js';
import type { TokenRecord } from '../../../src/store/types.js';

const graph = {
  url: 'https://graph.microsoft.com/v1.0',
  scopes: ['https://graph.microsoft.com/Mail.Send'],
  saveToSentItems: true,
};
function account(send: ConnectionConfig['send']): ResolvedAccount {
  const connection = {
    name: 'm365',
    provider: 'microsoft',
    sasl: 'xoauth2',
    send,
    graph,
  } as unknown as ConnectionConfig;
  return {
    id: 'ann@contoso.com',
    username: 'ann@contoso.com',
    email: 'ann@contoso.com',
    connection,
    entry: 'ann@contoso.com',
  };
}

const DISABLED =
  '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.';

function setup(options: {
  send: ConnectionConfig['send'];
  route?: 'smtp' | 'graph';
  smtpReply?: 'ok' | 'disabled' | 'other';
  graphToken?: 'ok' | 'needs-consent';
}) {
  const calls: string[] = [];
  const sender: MessageSender = { send: async () => ({ kind: 'sent' }) };
  const tokens: TokenProvider = {
    async getAccessToken(_a, o?: TokenOptions) {
      calls.push(`token:${o?.resource ?? 'mail'}${o?.forceRefresh ? ':force' : ''}`);
      if (o?.resource === 'graph' && options.graphToken === 'needs-consent')
        throw new ProxyError('needs-consent', 'does not allow sending through Microsoft Graph');
      return { token: `${o?.resource ?? 'mail'}-token`, expiresAt: Date.now() + 3600_000 };
    },
    invalidate: () => undefined,
  };
  const sending: GraphSending = {
    async route() {
      calls.push('route');
      return options.route ?? 'smtp';
    },
    async switchToGraph(_a, reply) {
      calls.push(`switch:${reply.slice(0, 9)}`);
    },
    createSender: () => sender,
  };
  const relay: UpstreamLogin<SmtpUpstream> = {
    async connect() {
      calls.push('smtp:connect');
      return {
        conn: {} as SmtpUpstream['conn'],
        server: { host: 'smtp', port: 587, tls: 'starttls' },
        extensions: [],
      };
    },
    async authenticate(_u, _a, token) {
      calls.push(`smtp:auth:${token}`);
      if (options.smtpReply === 'disabled')
        throw new ProxyError('upstream-rejected', `refused: ${DISABLED}`, { detail: DISABLED });
      if (options.smtpReply === 'other')
        throw new ProxyError('upstream-rejected', 'refused: 554 no', { detail: '554 no' });
      return { ok: true };
    },
    close() {
      calls.push('smtp:close');
    },
  };
  const authenticator: Authenticator = { verify: async () => account(options.send) };
  const run = () =>
    performLogin(
      { authenticator, tokens },
      { username: 'ann@contoso.com', password: new Secret('pw'), remoteAddress: '127.0.0.1' },
      graphAwareLogin(relay, { graph: sending, tokens }),
    );
  return { calls, run, sender };
}

describe('SMTP login with Graph sending', () => {
  it('route graph: a Graph token is the login; no SMTP connection, no mail token', async () => {
    const { calls, run, sender } = setup({ send: 'graph', route: 'graph' });
    const result = await run();
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(isLocalUpstream(result.upstream)).toBe(true);
      expect(result.upstream).toMatchObject({ sender, label: 'graph graph.microsoft.com' });
    }
    expect(calls).toEqual(['route', 'token:graph']);
  });

  it('route smtp: the relay login as before', async () => {
    const { calls, run } = setup({ send: 'auto', route: 'smtp', smtpReply: 'ok' });
    const result = await run();
    expect(result.ok && isLocalUpstream(result.upstream)).toBe(false);
    expect(calls).toEqual(['route', 'smtp:connect', 'token:mail', 'smtp:auth:mail-token']);
  });

  it('auto: 535 5.7.139 switches the account and this login goes on through Graph', async () => {
    const { calls, run } = setup({ send: 'auto', route: 'smtp', smtpReply: 'disabled' });
    const result = await run();
    expect(result.ok && isLocalUpstream(result.upstream)).toBe(true);
    expect(calls).toEqual([
      'route',
      'smtp:connect',
      'token:mail',
      'smtp:auth:mail-token',
      'smtp:close',
      'switch:535 5.7.1',
      'token:graph',
    ]);
  });

  it('auto: switched but the grant lacks Graph: the login fails with needs-consent', async () => {
    const { run } = setup({
      send: 'auto',
      route: 'smtp',
      smtpReply: 'disabled',
      graphToken: 'needs-consent',
    });
    const result = await run();
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe('needs-consent');
  });

  it('send smtp: 5.7.139 stays a refusal, and the log message names the switch', async () => {
    const { calls, run } = setup({ send: 'smtp', smtpReply: 'disabled' });
    const result = await run();
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.code).toBe('upstream-rejected');
      expect(result.error.detail).toBe(DISABLED);
      expect(result.error.message).toContain('set send: auto or send: graph on connection m365');
    }
    expect(calls.some((c) => c.startsWith('switch'))).toBe(false);
  });

  it('other refusals are not a switch', async () => {
    const { calls, run } = setup({ send: 'auto', smtpReply: 'other' });
    expect((await run()).ok).toBe(false);
    expect(calls.some((c) => c.startsWith('switch') || c === 'token:graph')).toBe(false);
  });
});

describe('SendRouter', () => {
  function store(initial?: Partial<TokenRecord>) {
    let record: TokenRecord | undefined = initial
      ? {
          accountId: 'ann@contoso.com',
          connection: 'm365',
          scopes: [],
          state: 'active',
          updatedAt: 0,
          ...initial,
        }
      : undefined;
    const reads: number[] = [];
    return {
      reads,
      get record() {
        return record;
      },
      async getToken() {
        reads.push(1);
        return record;
      },
      async updateToken(_id: string, update: (r: TokenRecord | undefined) => TokenRecord | undefined) {
        const next = update(record);
        if (next) record = next;
        return next;
      },
    };
  }

  it('send graph and smtp need no store; auto reads the stored switch, then remembers it briefly', async () => {
    let now = 1_000_000;
    const s = store({ graphSendUntil: now + 60_000 });
    const router = new SendRouter({ store: s, logger: silentLogger(), now: () => now });
    expect(await router.route(account('graph'))).toBe('graph');
    expect(await router.route(account(undefined))).toBe('smtp');
    expect(s.reads.length).toBe(0);
    expect(await router.route(account('auto'))).toBe('graph');
    expect(await router.route(account('auto'))).toBe('graph');
    expect(s.reads.length).toBe(1);
    now += 61_000;
    expect(await router.route(account('auto'))).toBe('smtp');
  });

  it('a switch is stored for every instance and lasts SWITCH_FOR_MS', async () => {
    let now = 5_000_000;
    const s = store({});
    const router = new SendRouter({ store: s, logger: silentLogger(), now: () => now });
    expect(await router.route(account('auto'))).toBe('smtp');
    await router.switchToGraph(account('auto'), DISABLED);
    expect(s.record?.graphSendUntil).toBe(now + SWITCH_FOR_MS);
    expect(await router.route(account('auto'))).toBe('graph');
    // Another instance reads it from the store.
    const other = new SendRouter({ store: s, logger: silentLogger(), now: () => now });
    expect(await other.route(account('auto'))).toBe('graph');
    now += SWITCH_FOR_MS + 1;
    expect(await other.route(account('auto'))).toBe('smtp');
  });

  it('a store that cannot be read means SMTP', async () => {
    const router = new SendRouter({
      store: {
        getToken: () => Promise.reject(new Error('down')),
        updateToken: () => Promise.reject(new Error('down')),
      },
      logger: silentLogger(),
    });
    expect(await router.route(account('auto'))).toBe('smtp');
    await router.switchToGraph(account('auto'), DISABLED);
    expect(await router.route(account('auto'))).toBe('graph');
  });

  it('knows Exchange’s SMTP AUTH refusal', () => {
    expect(smtpAuthDisabled(DISABLED)).toBe(true);
    expect(smtpAuthDisabled('535 5.7.3 Authentication unsuccessful')).toBe(false);
  });
});

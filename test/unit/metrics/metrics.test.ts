import { describe, expect, it } from 'vitest';
import { Metrics } from '../../../src/metrics/metrics.js';
import type { SessionRecord } from '../../../src/proxy/shared/types.js';

type Labels = Record<string, string | number>;

/** The value of one series, read from the registry (undefined when the series does not exist). */
async function value(metrics: Metrics, name: string, labels: Labels): Promise<number | undefined> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const found = values.find(
    (v) =>
      (v as { metricName?: string }).metricName === undefined &&
      Object.entries(labels).every(([k, want]) => v.labels[k] === want) &&
      Object.keys(v.labels).length === Object.keys(labels).length,
  );
  return found?.value;
}

function record(overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    protocol: 'imap',
    session: 's1',
    client: '127.0.0.1:5000',
    username: 'secret-user',
    account: 'alice@example.com',
    bytesFromClient: 120,
    bytesToClient: 3400,
    durationMs: 15,
    outcome: 'relayed',
    ...overrides,
  };
}

describe('Metrics', () => {
  it('counts ended sessions by protocol and outcome, and their bytes by direction', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.sessionStarted('imap');
    m.sessionStarted('imap');
    m.sessionStarted('smtp');
    m.sessionEnded(record());
    m.sessionEnded(record({ outcome: 'bad-credentials', bytesFromClient: 30, bytesToClient: 70 }));
    m.sessionEnded(record({ protocol: 'smtp', bytesFromClient: 5, bytesToClient: 6 }));

    const sessions = 'xoauth_proxy_sessions_total';
    expect(await value(m, sessions, { protocol: 'imap', outcome: 'relayed' })).toBe(1);
    expect(await value(m, sessions, { protocol: 'imap', outcome: 'bad-credentials' })).toBe(1);
    expect(await value(m, sessions, { protocol: 'smtp', outcome: 'relayed' })).toBe(1);
    expect(await value(m, sessions, { protocol: 'pop3', outcome: 'relayed' })).toBeUndefined();

    const bytes = 'xoauth_proxy_relayed_bytes_total';
    expect(await value(m, bytes, { protocol: 'imap', direction: 'from_client' })).toBe(150);
    expect(await value(m, bytes, { protocol: 'imap', direction: 'to_client' })).toBe(3470);
    expect(await value(m, bytes, { protocol: 'smtp', direction: 'from_client' })).toBe(5);
    expect(await value(m, bytes, { protocol: 'pop3', direction: 'to_client' })).toBe(0);

    const active = 'xoauth_proxy_active_sessions';
    expect(await value(m, active, { protocol: 'imap' })).toBe(0);
    expect(await value(m, active, { protocol: 'smtp' })).toBe(0);
    m.sessionStarted('pop3');
    expect(await value(m, active, { protocol: 'pop3' })).toBe(1);
  });

  it('counts the messages of sessions that send through a sender of their own (Graph mode)', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.sessionStarted('smtp');
    m.sessionStarted('smtp');
    m.sessionEnded(record({ protocol: 'smtp', outcome: 'delivered', messagesSent: 3, messagesRefused: 1 }));
    m.sessionEnded(record({ protocol: 'smtp', outcome: 'relayed' }));
    const messages = 'xoauth_proxy_smtp_messages_total';
    expect(await value(m, messages, { result: 'sent' })).toBe(3);
    expect(await value(m, messages, { result: 'refused' })).toBe(1);
    expect(await value(m, 'xoauth_proxy_sessions_total', { protocol: 'smtp', outcome: 'delivered' })).toBe(1);
  });

  it('never puts the user name or account of a session into the scrape', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.sessionStarted('imap');
    m.sessionEnded(record({ reason: 'closed by client', upstream: 'imap.example.com:993' }));
    const text = await m.scrape();
    expect(text).toContain('xoauth_proxy_sessions_total{protocol="imap",outcome="relayed"} 1');
    for (const secret of ['secret-user', 'alice@example.com', 's1', '127.0.0.1', 'imap.example.com']) {
      expect(text).not.toContain(secret);
    }
  });

  it('ignores negative or non-finite byte counts instead of throwing', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.sessionStarted('imap');
    expect(() => m.sessionEnded(record({ bytesFromClient: -5, bytesToClient: Number.NaN }))).not.toThrow();
    expect(
      await value(m, 'xoauth_proxy_relayed_bytes_total', { protocol: 'imap', direction: 'from_client' }),
    ).toBe(0);
  });

  it('times logins in a histogram by protocol and result', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.loginFinished('imap', 'ok', 0.2);
    m.loginFinished('imap', 'ok', 3);
    m.loginFinished('smtp', 'needs-consent', 0.01);
    const text = await m.scrape();
    expect(text).toContain('xoauth_proxy_login_duration_seconds_count{protocol="imap",result="ok"} 2');
    expect(text).toContain('xoauth_proxy_login_duration_seconds_sum{protocol="imap",result="ok"} 3.2');
    expect(text).toContain(
      'xoauth_proxy_login_duration_seconds_bucket{le="0.25",protocol="imap",result="ok"} 1',
    );
    expect(text).toContain(
      'xoauth_proxy_login_duration_seconds_count{protocol="smtp",result="needs-consent"} 1',
    );
  });

  it('times messages sent through Graph by result', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.graphMessage('sent', 0.3);
    m.graphMessage('send-as-denied', 0.05);
    const text = await m.scrape();
    expect(text).toContain('xoauth_proxy_graph_send_duration_seconds_count{result="sent"} 1');
    expect(text).toContain('xoauth_proxy_graph_send_duration_seconds_bucket{le="0.5",result="sent"} 1');
    expect(text).toContain('xoauth_proxy_graph_send_duration_seconds_count{result="send_as_denied"} 1');
  });

  it('counts token requests by grant and result, every series present from the start', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const name = 'xoauth_proxy_token_requests_total';
    for (const grant of ['refresh_token', 'client_credentials']) {
      for (const result of ['ok', 'transient', 'permanent']) {
        expect(await value(m, name, { grant, result })).toBe(0);
      }
    }
    m.tokenRequest('refresh_token', 'ok');
    m.tokenRequest('refresh_token', 'ok');
    m.tokenRequest('refresh_token', 'transient');
    m.tokenRequest('client_credentials', 'permanent');
    expect(await value(m, name, { grant: 'refresh_token', result: 'ok' })).toBe(2);
    expect(await value(m, name, { grant: 'refresh_token', result: 'transient' })).toBe(1);
    expect(await value(m, name, { grant: 'client_credentials', result: 'permanent' })).toBe(1);
    expect(await value(m, name, { grant: 'client_credentials', result: 'ok' })).toBe(0);
  });

  it('reads the accounts gauge at scrape time, every state exported', async () => {
    const m = new Metrics({ defaultMetrics: false });
    // Without a source there is no series at all (not a misleading zero).
    expect(await m.scrape()).not.toMatch(/^xoauth_proxy_accounts\{/m);
    let states: { state: 'active' | 'needs-consent' | 'failing' | 'no-grant' | 'app-only' }[] = [
      { state: 'active' },
      { state: 'active' },
      { state: 'needs-consent' },
    ];
    m.trackAccounts(() => Promise.resolve(states));
    const name = 'xoauth_proxy_accounts';
    expect(await value(m, name, { state: 'active' })).toBe(2);
    expect(await value(m, name, { state: 'needs-consent' })).toBe(1);
    expect(await value(m, name, { state: 'failing' })).toBe(0);
    expect(await value(m, name, { state: 'no-grant' })).toBe(0);
    expect(await value(m, name, { state: 'app-only' })).toBe(0);
    states = [{ state: 'failing' }];
    expect(await value(m, name, { state: 'active' })).toBe(0);
    expect(await value(m, name, { state: 'failing' })).toBe(1);
  });

  it('still scrapes when the account source throws (the gauge is left out)', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.trackAccounts(() => {
      throw new Error('store unreadable');
    });
    const text = await m.scrape();
    expect(text).toContain('xoauth_proxy_token_requests_total');
    expect(text).not.toMatch(/^xoauth_proxy_accounts\{/m);
  });

  it('keeps separate registries per object, with the process metrics by default', async () => {
    const a = new Metrics();
    const b = new Metrics({ defaultMetrics: false });
    a.tokenRequest('refresh_token', 'ok');
    expect(
      await value(b, 'xoauth_proxy_token_requests_total', { grant: 'refresh_token', result: 'ok' }),
    ).toBe(0);
    const text = await a.scrape();
    expect(text).toContain('process_cpu_seconds_total');
    expect(text).toContain('nodejs_heap_size_used_bytes');
    expect(await b.scrape()).not.toContain('process_cpu_seconds_total');
    expect(a.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });
});

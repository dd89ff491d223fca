/**
 * Sending through Microsoft Graph with the proxy binary: real clients (swaks, nodemailer, curl) log in
 * to the proxy's SMTP listener, the proxy ends the SMTP transaction itself and hands each message to
 * the fake Graph, which checks the Bearer token with the fake authorization server (valid, for that
 * mailbox, a Graph token holding Mail.Send, not a mail token). The authorization server is Entra-like:
 * one resource per token request, and a refresh for a scope the owner never consented to is refused.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getTestCerts } from '../helpers/certs.js';
import { FAKE_TENANT_ID, startFakeAuthServer, type FakeAuthServer } from '../helpers/fake-auth-server.js';
import { startFakeGraph, verifyWithFakeAuth, type FakeGraph } from '../helpers/fake-graph.js';
import { startFakeSmtpUpstream, type FakeSmtpUpstream } from '../helpers/fake-smtp-upstream.js';
import { startProxyProcess, type ProxyProcess, type ProxyUpstream } from '../helpers/proxy-process.js';
import { printLogsOnFailure, run, testMessage } from './support.js';

const OUTLOOK_SMTP = 'https://outlook.office.com/SMTP.Send';
const GRAPH_SEND = 'https://graph.microsoft.com/Mail.Send';
/** Always Graph (a scanner in a tenant without SMTP AUTH). */
const SCANNER = { username: 'scanner@contoso.com', password: 'scan-pw-1', connection: 'graph' };
/** SMTP, and Graph once Exchange refuses SMTP AUTH for the mailbox. */
const ALICE = { username: 'alice@contoso.com', password: 'alice-pw-1', connection: 'auto' };
/** Consented before the connection sent through Graph: no Mail.Send in the grant. */
const OLD = { username: 'old@contoso.com', password: 'old-pw-1', connection: 'graph' };

let auth: FakeAuthServer;
let graph: FakeGraph;
let exchange: FakeSmtpUpstream;
let proxy: ProxyProcess;

beforeAll(async () => {
  auth = await startFakeAuthServer({ multiResource: true, rotateRefreshTokens: true });
  graph = await startFakeGraph({ verifyToken: verifyWithFakeAuth(auth) });
  exchange = await startFakeSmtpUpstream({
    tls: 'starttls',
    checkAccessToken: (t) => auth.checkAccessToken(t),
  });
  const microsoft = (send: 'graph' | 'auto'): ProxyUpstream => ({
    host: '127.0.0.1',
    ca: getTestCerts().caPem,
    smtp: { port: exchange.port, tls: 'starttls' },
    extra: {
      provider: 'microsoft',
      tenantId: FAKE_TENANT_ID,
      scopes: [OUTLOOK_SMTP, 'offline_access'],
      send,
      graphUrl: graph.url,
    },
  });
  const grant = (email: string, connection: string, scopes: string[]) => ({
    email,
    connection,
    refreshToken: auth.issueGrant(email, { scopes, accessTokenTtlSeconds: 0 }).refreshToken,
  });
  const both = [OUTLOOK_SMTP, 'offline_access', GRAPH_SEND];
  proxy = await startProxyProcess({
    auth,
    upstream: microsoft('graph'),
    moreConnections: { graph: microsoft('graph'), auto: microsoft('auto') },
    accounts: [SCANNER, ALICE, OLD],
    grants: [
      grant(SCANNER.username, 'graph', both),
      grant(ALICE.username, 'auto', both),
      grant(OLD.username, 'graph', [OUTLOOK_SMTP, 'offline_access']),
    ],
    listen: { imap: [], smtp: ['none'] },
  });
});
afterAll(async () => {
  await proxy?.stop();
  await exchange?.close();
  await graph?.close();
  await auth?.close();
});
printLogsOnFailure(() => [proxy && { name: 'proxy', text: () => proxy.output() }]);

async function swaks(
  user: { username: string; password: string },
  raw: string,
  to: string[],
): Promise<{ code: number | null; transcript: string }> {
  const file = join(proxy.dir, `graph-${randomBytes(4).toString('hex')}.eml`);
  // swaks ends DATA with CRLF "." CRLF after the file, so the file leaves out the final CRLF.
  writeFileSync(file, raw.replace(/\r\n$/, ''));
  const r = await run('swaks', [
    ...['--server', '127.0.0.1', '--port', String(proxy.ports.smtp.none), '--ehlo', 'swaks.graph.test'],
    ...['--auth', 'PLAIN', '--auth-user', user.username, '--auth-password', user.password],
    ...['--from', user.username, '--to', to.join(','), '--data', `@${file}`, '--timeout', '30'],
  ]);
  return { code: r.code, transcript: r.stdout.toString('utf8') };
}

describe('SMTP through Microsoft Graph (the proxy binary, real clients)', () => {
  it('swaks: a small message reaches Graph as its exact MIME bytes; a Bcc-only recipient is delivered unseen', async () => {
    const raw = testMessage({
      from: SCANNER.username,
      to: 'bob@example.org',
      subject: 'scan 1',
      body: '.dot line\r\nend',
    });
    const before = graph.delivered.length;
    const r = await swaks(SCANNER, raw, ['bob@example.org', 'hidden@example.org']);
    expect(r.code, r.transcript).toBe(0);
    expect(r.transcript).toMatch(/<- {2}250 2\.0\.0/);
    const [d] = graph.delivered.slice(before);
    expect(d).toMatchObject({ mailbox: SCANNER.username, via: 'mime', savedToSentItems: true });
    expect(d!.recipients.sort()).toEqual(['bob@example.org', 'hidden@example.org']);
    // Exchange strips the Bcc header: what remains is the client's message, byte for byte.
    expect(d!.mime?.toString('utf8')).toBe(raw);
    // Graph got a Graph token; the SMTP server was never asked.
    expect(exchange.authAttempts.filter((a) => a.username === SCANNER.username)).toEqual([]);
  });

  it('nodemailer: a 10 MB message with a 9 MB attachment arrives with the attachment byte-exact', async () => {
    const attachment = randomBytes(9 * 1024 * 1024);
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: proxy.ports.smtp.none!,
      secure: false,
      ignoreTLS: true,
      auth: { user: SCANNER.username, pass: SCANNER.password },
    });
    const before = graph.delivered.length;
    try {
      const info = await transport.sendMail({
        from: SCANNER.username,
        to: 'archive@example.org',
        subject: 'scan with attachment',
        text: 'See the attachment.',
        attachments: [{ filename: 'scan.pdf', content: attachment, contentType: 'application/pdf' }],
      });
      expect(info.response).toMatch(/^250 /);
    } finally {
      transport.close();
    }
    const [d] = graph.delivered.slice(before);
    expect(d?.via).toBe('draft');
    expect(d?.recipients).toEqual(['archive@example.org']);
    const file = d?.attachments.find((a) => a.name === 'scan.pdf');
    expect(file?.bytes.equals(attachment)).toBe(true);
    // The big attachment went through an upload session in ranges Graph accepts.
    expect(graph.requests.filter((q) => q.method === 'PUT').every((q) => q.bytes <= 4_000_000)).toBe(true);
    expect(graph.openDrafts).toBe(0);
  });

  it('curl: two recipients, one of them only in the envelope', async () => {
    const raw = testMessage({ from: SCANNER.username, to: 'one@example.org', subject: 'curl graph' });
    const file = join(proxy.dir, 'curl-graph.eml');
    writeFileSync(file, raw);
    const before = graph.delivered.length;
    const r = await run('curl', [
      '--silent',
      '--show-error',
      '--url',
      `smtp://127.0.0.1:${proxy.ports.smtp.none}`,
      '--user',
      `${SCANNER.username}:${SCANNER.password}`,
      '--mail-from',
      SCANNER.username,
      '--mail-rcpt',
      'one@example.org',
      '--mail-rcpt',
      'two@example.org',
      '--upload-file',
      file,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const [d] = graph.delivered.slice(before);
    expect(d!.recipients.sort()).toEqual(['one@example.org', 'two@example.org']);
    expect(d!.mime?.toString('utf8')).toBe(raw);
  });

  it.each([429, 503])(
    'Graph %i: the client gets 451, and its retry after Retry-After works',
    async (status) => {
      const raw = testMessage({ from: SCANNER.username, to: 'carol@example.org', subject: `busy ${status}` });
      graph.failNext(1, status, { retryAfter: 1 });
      const before = graph.delivered.length;
      const first = await swaks(SCANNER, raw, ['carol@example.org']);
      expect(first.code).not.toBe(0);
      expect(first.transcript).toMatch(/<\*\* 451 4\.4\.5 /);
      expect(graph.delivered.length).toBe(before);
      await new Promise((r) => setTimeout(r, 1_200));
      const again = await swaks(SCANNER, raw, ['carol@example.org']);
      expect(again.code, again.transcript).toBe(0);
      expect(graph.delivered.length).toBe(before + 1);
    },
  );

  it('send: auto switches a mailbox to Graph after 535 5.7.139, says so in status, and stays switched', async () => {
    exchange.tenantAuthDisabled = true;
    try {
      const raw = testMessage({ from: ALICE.username, to: 'dave@example.org', subject: 'auto 1' });
      const attemptsBefore = exchange.authAttempts.length;
      const before = graph.delivered.length;
      const first = await swaks(ALICE, raw, ['dave@example.org']);
      // The client never sees the refusal: 235, then the message goes through Graph.
      expect(first.code, first.transcript).toBe(0);
      expect(first.transcript).toMatch(/<- {2}235 /);
      expect(exchange.authAttempts.length).toBe(attemptsBefore + 1);
      expect(graph.delivered.slice(before).map((d) => d.mailbox)).toEqual([ALICE.username]);

      const second = await swaks(ALICE, raw, ['dave@example.org']);
      expect(second.code, second.transcript).toBe(0);
      // No second SMTP attempt: the switch is remembered (in the store, for every instance).
      expect(exchange.authAttempts.length).toBe(attemptsBefore + 1);
      expect(graph.delivered.length).toBe(before + 2);

      const status = (await proxy.status()) as Array<{
        accountId: string;
        sending?: Record<string, unknown>;
      }>;
      expect(status.find((s) => s.accountId === ALICE.username)?.sending).toMatchObject({
        mode: 'auto',
        via: 'graph',
        graphConsent: true,
      });
      const table = await proxy.cli(['status', '--config', proxy.configFile]);
      expect(table.stdout).toMatch(/alice@contoso\.com\s+active.*graph \(auto; SMTP AUTH off, SMTP again/);
    } finally {
      exchange.tenantAuthDisabled = false;
    }
  });

  it('a grant consented without Mail.Send: the client is told to consent again, and status says why', async () => {
    const raw = testMessage({ from: OLD.username, to: 'erin@example.org', subject: 'old grant' });
    const r = await swaks(OLD, raw, ['erin@example.org']);
    expect(r.code).not.toBe(0);
    expect(r.transcript).toMatch(/<\*\* 535 .*consent/i);
    const table = await proxy.cli(['status', '--config', proxy.configFile]);
    expect(table.stdout).toMatch(/old@contoso\.com\s+active.*consented without Graph \(Mail\.Send\)/);
  });
});

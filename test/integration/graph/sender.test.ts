/**
 * The Graph sender against the fake Graph over real HTTP: which route each message takes, what
 * arrives, and what each failure becomes.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import MailComposer from 'nodemailer/lib/mail-composer';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors.js';
import { createLogger } from '../../../src/log.js';
import { createGraphSender, GraphThrottle, type GraphSenderOptions } from '../../../src/graph/index.js';
import type { OutgoingMessage } from '../../../src/graph/types.js';
import { startFakeGraph, type FakeGraph } from '../../helpers/fake-graph.js';

const MAILBOX = 'ann@example.com';
const GRAPH_SCOPE = 'https://graph.microsoft.com/Mail.Send';
const tokens = new Map<string, { email: string; scopes: string[] }>([
  ['good', { email: MAILBOX, scopes: [GRAPH_SCOPE, 'offline_access'] }],
  ['no-mail-send', { email: MAILBOX, scopes: ['https://graph.microsoft.com/User.Read'] }],
  ['bob', { email: 'bob@example.com', scopes: [GRAPH_SCOPE] }],
]);

let graph: FakeGraph;
beforeAll(async () => {
  graph = await startFakeGraph({ verifyToken: (t) => tokens.get(t) });
});
afterAll(async () => {
  await graph.close();
});
afterEach(() => {
  graph.delivered.length = 0;
  graph.requests.length = 0;
  for (const k of Object.keys(graph.counts) as (keyof FakeGraph['counts'])[]) graph.counts[k] = 0;
  graph.setDelay(0);
});

function sender(overrides: Partial<GraphSenderOptions> = {}) {
  const calls: boolean[] = [];
  const s = createGraphSender({
    graphUrl: graph.url,
    mailbox: MAILBOX,
    saveToSentItems: true,
    accessToken: ({ forceRefresh }) => {
      calls.push(forceRefresh);
      return Promise.resolve('good');
    },
    throttle: new GraphThrottle(),
    timeoutMs: 10_000,
    ...overrides,
  });
  return { sender: s, tokenCalls: calls };
}

async function compose(mail: ConstructorParameters<typeof MailComposer>[0]): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    new MailComposer({ from: MAILBOX, subject: 'Test', ...mail })
      .compile()
      .build((err, out) => (err ? reject(err) : resolve(out))),
  );
}

const signal = () => new AbortController().signal;

async function small(overrides: Partial<OutgoingMessage> = {}): Promise<OutgoingMessage> {
  const data = await compose({ to: 'Bob <bob@example.org>', text: 'Hello through Graph\r\n' });
  return { from: MAILBOX, recipients: ['bob@example.org'], data, ...overrides };
}

describe('Graph sender: routes and what arrives', () => {
  it('a small message arrives as the exact MIME bytes, by one MIME sendMail, saved to Sent Items', async () => {
    const message = await small();
    expect(await sender().sender.send(message, signal())).toEqual({ kind: 'sent' });
    expect(graph.counts.sendMailMime).toBe(1);
    expect(graph.requests).toHaveLength(1);
    expect(graph.delivered).toHaveLength(1);
    const d = graph.delivered[0]!;
    expect(d.via).toBe('mime');
    expect(d.mime!.equals(message.data)).toBe(true);
    expect(d.recipients).toEqual(['bob@example.org']);
    expect(d.savedToSentItems).toBe(true);
  });

  it('an envelope-only (Bcc) recipient is delivered and no delivered header names it', async () => {
    const message = await small({ recipients: ['bob@example.org', 'Secret@Example.net'] });
    expect(await sender().sender.send(message, signal())).toEqual({ kind: 'sent' });
    const d = graph.delivered[0]!;
    expect(d.via).toBe('mime');
    expect(d.recipients).toEqual(['bob@example.org', 'secret@example.net']);
    expect(d.mime!.toString('latin1').toLowerCase()).not.toContain('secret@example.net');
    expect(d.mime!.equals(message.data)).toBe(true);
  });

  it('a 9 MB attachment goes through an upload session in ordered ranges of at most 4 MB; inline image and small file by POST', async () => {
    const big = randomBytes(9 * 1024 * 1024);
    const image = randomBytes(40_000);
    const note = Buffer.from('a small text file\n');
    const data = await compose({
      to: 'bob@example.org',
      cc: 'carol@example.org',
      html: '<p>Scan attached <img src="cid:logo@scanner"></p>',
      headers: { 'X-Scanner': 'MFP-1', Importance: 'high' },
      attachments: [
        { filename: 'scan.pdf', content: big, contentType: 'application/pdf' },
        { filename: 'logo.png', content: image, contentType: 'image/png', cid: 'logo@scanner' },
        { filename: 'note.txt', content: note, contentType: 'text/plain' },
      ],
    });
    expect(data.length).toBeGreaterThan(10_000_000);
    const message = {
      from: MAILBOX,
      recipients: ['bob@example.org', 'carol@example.org', 'hidden@example.org'],
      data,
    };
    expect(await sender().sender.send(message, signal())).toEqual({ kind: 'sent' });

    expect(graph.counts).toMatchObject({
      createDraft: 1,
      attachmentPost: 2,
      uploadSession: 1,
      send: 1,
      deleteDraft: 0,
    });
    const puts = graph.requests.filter((r) => r.method === 'PUT');
    expect(puts.length).toBe(Math.ceil(big.length / 3_932_160));
    expect(
      puts.every((p) => p.bytes <= 4_000_000 && !p.authorization && p.status >= 200 && p.status < 300),
    ).toBe(true);
    expect(puts.map((p) => p.contentRange)).toEqual(
      puts.map(
        (_, i) => `bytes ${i * 3_932_160}-${Math.min(big.length, (i + 1) * 3_932_160) - 1}/${big.length}`,
      ),
    );
    expect(graph.requests.every((r) => r.bytes <= 4_000_000)).toBe(true);

    const d = graph.delivered[0]!;
    expect(d.via).toBe('draft');
    expect(d.recipients).toEqual(['bob@example.org', 'carol@example.org', 'hidden@example.org']);
    expect(d.draft).toMatchObject({
      subject: 'Test',
      importance: 'high',
      toRecipients: [{ emailAddress: { address: 'bob@example.org' } }],
      ccRecipients: [{ emailAddress: { address: 'carol@example.org' } }],
      bccRecipients: [{ emailAddress: { address: 'hidden@example.org' } }],
      internetMessageHeaders: [{ name: 'X-Scanner', value: 'MFP-1' }],
    });
    expect((d.draft!.body as { content: string }).content).toContain('cid:logo@scanner');
    expect(d.draft!.from).toBeUndefined();
    const byName = new Map(d.attachments.map((a) => [a.name, a]));
    expect(byName.get('scan.pdf')!.bytes.equals(big)).toBe(true);
    expect(byName.get('scan.pdf')!.isInline).toBe(false);
    expect(byName.get('logo.png')).toMatchObject({
      isInline: true,
      contentId: 'logo@scanner',
      contentType: 'image/png',
    });
    expect(byName.get('logo.png')!.bytes.equals(image)).toBe(true);
    expect(byName.get('note.txt')!.bytes.equals(note)).toBe(true);
    expect(graph.openDrafts).toBe(0);
  });

  it('saveToSentItems false takes JSON sendMail, which can honour it', async () => {
    const data = await compose({
      to: 'bob@example.org',
      text: 'no copy please',
      attachments: [{ filename: 'a.bin', content: Buffer.from([0, 1, 2, 255]) }],
    });
    const outcome = await sender({ saveToSentItems: false }).sender.send(
      { from: MAILBOX, recipients: ['bob@example.org'], data },
      signal(),
    );
    expect(outcome).toEqual({ kind: 'sent' });
    const d = graph.delivered[0]!;
    expect(d).toMatchObject({ via: 'json', savedToSentItems: false, recipients: ['bob@example.org'] });
    expect(d.attachments[0]!.bytes.equals(Buffer.from([0, 1, 2, 255]))).toBe(true);
    expect(d.draft!.body).toEqual({ contentType: 'text', content: 'no copy please' });
  });

  it('a header recipient missing from the envelope does not get the message (JSON path, envelope recipients only)', async () => {
    const data = await compose({ to: 'bob@example.org, eve@example.org', text: 'for bob only' });
    const outcome = await sender().sender.send(
      { from: MAILBOX, recipients: ['bob@example.org'], data },
      signal(),
    );
    expect(outcome).toEqual({ kind: 'sent' });
    expect(graph.delivered[0]).toMatchObject({ via: 'json', recipients: ['bob@example.org'] });
  });

  it('the MIME route carries exactly 3,000,000 bytes (4,000,000 in base64); one byte more goes structured', async () => {
    const sized = (n: number): OutgoingMessage => {
      const head = `From: ${MAILBOX}\r\nTo: bob@example.org\r\nSubject: sized\r\n\r\n`;
      const lines = 'a'.repeat(76) + '\r\n';
      let body = lines.repeat(Math.floor((n - head.length) / lines.length));
      body += 'b'.repeat(n - head.length - body.length - 2) + '\r\n';
      const data = Buffer.from(head + body);
      expect(data.length).toBe(n);
      return { from: MAILBOX, recipients: ['bob@example.org'], data };
    };
    const { sender: s } = sender();
    const atCap = sized(3_000_000);
    expect(await s.send(atCap, signal())).toEqual({ kind: 'sent' });
    expect(graph.delivered[0]!.via).toBe('mime');
    expect(graph.delivered[0]!.mime!.equals(atCap.data)).toBe(true);
    expect(graph.requests[0]!.bytes).toBe(4_000_000);
    expect(await s.send(sized(3_000_001), signal())).toEqual({ kind: 'sent' });
    expect(graph.delivered[1]!.via).toBe('json');
  });

  it('a message of exactly maxMessageBytes goes', async () => {
    const message = await small();
    const outcome = await sender({ maxMessageBytes: message.data.length }).sender.send(message, signal());
    expect(outcome).toEqual({ kind: 'sent' });
  });

  it('a message over maxMessageBytes is too-large without a request', async () => {
    const message = await small();
    const outcome = await sender({ maxMessageBytes: message.data.length - 1 }).sender.send(message, signal());
    expect(outcome.kind).toBe('too-large');
    expect(graph.counts.requests).toBe(0);
  });

  it('a failure midway deletes the draft and returns the failure', async () => {
    const data = await compose({
      to: 'bob@example.org',
      text: 'x',
      attachments: [{ filename: 'big.bin', content: randomBytes(3_500_000) }],
    });
    const failSend: typeof fetch = (input, init) =>
      String(input).endsWith('/send')
        ? Promise.resolve(
            new Response(JSON.stringify({ error: { code: 'ErrorQuotaExceeded', message: 'full' } }), {
              status: 400,
            }),
          )
        : fetch(input, init);
    const outcome = await sender({ fetch: failSend }).sender.send(
      { from: MAILBOX, recipients: ['bob@example.org'], data },
      signal(),
    );
    expect(outcome).toEqual({ kind: 'rejected', reason: 'Graph answered 400 ErrorQuotaExceeded: full' });
    expect(graph.counts.deleteDraft).toBe(1);
    expect(graph.openDrafts).toBe(0);
    expect(graph.delivered).toHaveLength(0);
  });
  it('the client hanging up during an upload still deletes the draft', async () => {
    const data = await compose({
      to: 'bob@example.org',
      text: 'x',
      attachments: [{ filename: 'big.bin', content: randomBytes(5_000_000) }],
    });
    const controller = new AbortController();
    const hangUpAtFirstPut: typeof fetch = (input, init) => {
      if (init?.method === 'PUT') controller.abort();
      return fetch(input, init);
    };
    const outcome = await sender({ fetch: hangUpAtFirstPut }).sender.send(
      { from: MAILBOX, recipients: ['bob@example.org'], data },
      controller.signal,
    );
    expect(outcome).toMatchObject({ kind: 'temporary', reason: expect.stringContaining('went away') });
    expect(graph.counts).toMatchObject({ createDraft: 1, uploadSession: 1, deleteDraft: 1 });
    expect(graph.openDrafts).toBe(0);
  });

  it('an upload URL that refuses us is temporary (not a consent problem), and the draft goes', async () => {
    const data = await compose({
      to: 'bob@example.org',
      text: 'x',
      attachments: [{ filename: 'big.bin', content: randomBytes(3_500_000) }],
    });
    const refusePut: typeof fetch = (input, init) =>
      init?.method === 'PUT' ? Promise.resolve(new Response('', { status: 401 })) : fetch(input, init);
    const calls: boolean[] = [];
    const outcome = await sender({
      fetch: refusePut,
      accessToken: ({ forceRefresh }) => {
        calls.push(forceRefresh);
        return Promise.resolve('good');
      },
    }).sender.send({ from: MAILBOX, recipients: ['bob@example.org'], data }, signal());
    expect(outcome).toMatchObject({ kind: 'temporary', reason: expect.stringContaining('upload session') });
    expect(calls).toEqual([false]);
    expect(graph.openDrafts).toBe(0);
  });
});

describe('Graph sender: failures', () => {
  it('429 with Retry-After: temporary, the next attempt is answered from the throttle, a later one goes', async () => {
    let now = 1_000_000;
    const throttle = new GraphThrottle({ now: () => now });
    const { sender: s } = sender({ throttle });
    graph.failNext(1, 429, { retryAfter: 7 });
    const message = await small();
    expect(await s.send(message, signal())).toMatchObject({ kind: 'temporary', retryAfterSeconds: 7 });
    expect(graph.counts.requests).toBe(1);

    expect(await s.send(message, signal())).toMatchObject({ kind: 'temporary', retryAfterSeconds: 7 });
    expect(graph.counts.requests).toBe(1);
    // Another session of the same mailbox shares the throttle.
    expect(await sender({ throttle }).sender.send(message, signal())).toMatchObject({ kind: 'temporary' });
    expect(graph.counts.requests).toBe(1);

    now += 7_000;
    expect(await s.send(message, signal())).toEqual({ kind: 'sent' });
    expect(graph.delivered).toHaveLength(1);
  });

  it('429 with an HTTP-date Retry-After', async () => {
    graph.failNext(1, 429, { retryAfter: new Date(Date.now() + 30_000).toUTCString() });
    const outcome = await sender().sender.send(await small(), signal());
    expect(outcome.kind).toBe('temporary');
    expect(outcome.kind === 'temporary' && outcome.retryAfterSeconds).toBeGreaterThanOrEqual(28);
  });

  it('503: temporary, and a retry works', async () => {
    const { sender: s } = sender();
    graph.failNext(1, 503);
    expect(await s.send(await small(), signal())).toMatchObject({
      kind: 'temporary',
      reason: expect.stringContaining('503'),
    });
    expect(await s.send(await small(), signal())).toEqual({ kind: 'sent' });
  });

  it('401 once: one forced refresh, then the retry goes', async () => {
    const calls: boolean[] = [];
    const { sender: s } = sender({
      accessToken: ({ forceRefresh }) => {
        calls.push(forceRefresh);
        return Promise.resolve(forceRefresh ? 'good' : 'expired');
      },
    });
    expect(await s.send(await small(), signal())).toEqual({ kind: 'sent' });
    expect(calls).toEqual([false, true]);
    expect(graph.counts.unauthorized).toBe(1);
  });

  it('401 after a fresh token too: needs-consent, and no third try', async () => {
    const calls: boolean[] = [];
    const { sender: s } = sender({
      accessToken: ({ forceRefresh }) => {
        calls.push(forceRefresh);
        return Promise.resolve('wrong-audience');
      },
    });
    expect(await s.send(await small(), signal())).toMatchObject({ kind: 'needs-consent' });
    expect(calls).toEqual([false, true]);
    expect(graph.counts.unauthorized).toBe(2);
  });

  it('a token without Mail.Send: needs-consent saying so', async () => {
    const { sender: s } = sender({ accessToken: () => Promise.resolve('no-mail-send') });
    expect(await s.send(await small(), signal())).toMatchObject({
      kind: 'needs-consent',
      reason: expect.stringContaining('Mail.Send'),
    });
  });

  it("another user's token for this mailbox: needs-consent (403 access denied)", async () => {
    const { sender: s } = sender({ accessToken: () => Promise.resolve('bob') });
    expect((await s.send(await small(), signal())).kind).toBe('needs-consent');
  });

  it('the token manager says needs-consent / token-unavailable: no request', async () => {
    const consent = sender({
      accessToken: () =>
        Promise.reject(new ProxyError('needs-consent', 'revoked', { detail: 'consent again' })),
    });
    expect(await consent.sender.send(await small(), signal())).toEqual({
      kind: 'needs-consent',
      reason: 'the mailbox owner must grant access again',
    });
    const down = sender({
      accessToken: () => Promise.reject(new ProxyError('token-unavailable', 'token endpoint 503')),
    });
    expect((await down.sender.send(await small(), signal())).kind).toBe('temporary');
    expect(graph.counts.requests).toBe(0);
  });

  it('From not the mailbox: send-as-denied (MIME and JSON paths)', async () => {
    const data = await compose({ from: 'boss@example.com', to: 'bob@example.org', text: 'x' });
    const m = { from: 'boss@example.com', recipients: ['bob@example.org'], data };
    expect(await sender().sender.send(m, signal())).toMatchObject({
      kind: 'send-as-denied',
      reason: expect.stringContaining('ErrorSendAsDenied'),
    });
    expect((await sender({ saveToSentItems: false }).sender.send(m, signal())).kind).toBe('send-as-denied');
    expect(graph.delivered).toHaveLength(0);
  });

  it('the client hanging up aborts the request in flight', async () => {
    graph.setDelay(5_000);
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 100);
    const outcome = await sender().sender.send(await small(), controller.signal);
    expect(outcome).toMatchObject({ kind: 'temporary', reason: expect.stringContaining('went away') });
    expect(Date.now() - started).toBeLessThan(2_000);
    const already = new AbortController();
    already.abort();
    graph.setDelay(0);
    const before = graph.counts.requests;
    expect((await sender().sender.send(await small(), already.signal)).kind).toBe('temporary');
    expect(graph.counts.requests).toBe(before);
  });

  it('a Graph that does not answer in time: temporary', async () => {
    graph.setDelay(2_000);
    const outcome = await sender({ timeoutMs: 200 }).sender.send(await small(), signal());
    expect(outcome).toMatchObject({ kind: 'temporary', reason: expect.stringContaining('in time') });
  });

  it('Graph unreachable: temporary', async () => {
    const closed = await startFakeGraph({ verifyToken: () => undefined });
    const url = closed.url;
    await closed.close();
    const outcome = await sender({ graphUrl: url }).sender.send(await small(), signal());
    expect(outcome).toMatchObject({ kind: 'temporary', reason: expect.stringContaining('ECONNREFUSED') });
  });
});

describe('Graph sender: logging', () => {
  it('logs each send and each failure without the token or the message content', async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(
          ...chunk
            .toString('utf8')
            .split('\n')
            .filter((l) => l !== ''),
        );
        done();
      },
    });
    const logger = createLogger({ level: 'debug', pretty: false, destination });
    tokens.set('tok-SECRET-fresh', { email: MAILBOX, scopes: [GRAPH_SCOPE] });
    try {
      const { sender: s } = sender({
        logger,
        accessToken: ({ forceRefresh }) =>
          Promise.resolve(forceRefresh ? 'tok-SECRET-fresh' : 'tok-SECRET-stale'),
      });
      const data = await compose({ to: 'bob@example.org', subject: 'Subject-SECRET', text: 'Body-SECRET' });
      const message = { from: MAILBOX, recipients: ['bob@example.org', 'hidden-SECRET@example.net'], data };
      expect(await s.send(message, signal())).toEqual({ kind: 'sent' });
      graph.failNext(1, 503);
      expect((await s.send(message, signal())).kind).toBe('temporary');
    } finally {
      tokens.delete('tok-SECRET-fresh');
    }
    expect(lines.some((l) => l.includes('"msg":"graph send"') && l.includes('"outcome":"sent"'))).toBe(true);
    expect(lines.some((l) => l.includes('"msg":"graph request failed"') && l.includes('"status":503'))).toBe(
      true,
    );
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) expect(line).not.toContain('SECRET');
  });
});

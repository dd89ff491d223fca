/**
 * The fake Graph is strict where Graph is: these pin the limits the sender's tests rely on, so a
 * lenient fake cannot make a broken sender look right.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAuthServer } from '../../helpers/fake-auth-server.js';
import { startFakeGraph, verifyWithFakeAuth, type FakeGraph } from '../../helpers/fake-graph.js';

let graph: FakeGraph;
const tokens: Record<string, { email: string; scopes: string[] }> = {
  ann: { email: 'ann@example.com', scopes: ['Mail.Send'] },
  app: { email: 'app@tenant', scopes: ['https://graph.microsoft.com/Mail.Send'] },
};
beforeAll(async () => {
  graph = await startFakeGraph({
    verifyToken: (t) => tokens[t],
    delegates: { 'app@tenant': ['*'] },
    sendAs: ['shared@example.com'],
    maxMessageBytes: 10_000_000,
  });
});
afterAll(async () => {
  await graph.close();
});
afterEach(() => {
  graph.delivered.length = 0;
});

async function call(
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
) {
  const url = path.startsWith('http') ? path : `${graph.url}${path}`;
  const res = await fetch(url, { method, body, headers: { authorization: 'Bearer ann', ...headers } });
  const text = await res.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
  } catch {
    code = undefined;
  }
  return { status: res.status, code, text, headers: res.headers };
}

const json = { 'content-type': 'application/json' };
const mime = (headers: string) => Buffer.from(`${headers}\r\n\r\nbody\r\n`).toString('base64');

async function draft(): Promise<string> {
  const r = await call(
    'POST',
    '/users/ann@example.com/messages',
    JSON.stringify({ subject: 's', toRecipients: [{ emailAddress: { address: 'bob@example.org' } }] }),
    json,
  );
  expect(r.status).toBe(201);
  return (JSON.parse(r.text) as { id: string }).id;
}

async function session(id: string, size: number): Promise<string> {
  const r = await call(
    'POST',
    `/users/ann@example.com/messages/${id}/attachments/createUploadSession`,
    JSON.stringify({ AttachmentItem: { attachmentType: 'file', name: 'f.bin', size } }),
    json,
  );
  expect(r.status).toBe(201);
  return (JSON.parse(r.text) as { uploadUrl: string }).uploadUrl;
}

describe('fake Graph', () => {
  it('checks the token: none or unknown 401, wrong mailbox 403, app token with delegates for any', async () => {
    const body = mime('From: ann@example.com\r\nTo: bob@example.org');
    const plain = { 'content-type': 'text/plain' };
    expect(
      (await call('POST', '/users/ann@example.com/sendMail', body, { ...plain, authorization: '' })).code,
    ).toBe('InvalidAuthenticationToken');
    expect(
      (await call('POST', '/users/ann@example.com/sendMail', body, { ...plain, authorization: 'Bearer x' }))
        .status,
    ).toBe(401);
    const other = await call(
      'POST',
      '/users/carl@example.com/sendMail',
      mime('From: carl@example.com\r\nTo: b@x.org'),
      plain,
    );
    expect([other.status, other.code]).toEqual([403, 'ErrorAccessDenied']);
    const app = await call(
      'POST',
      '/users/CARL@example.com/sendMail',
      mime('From: carl@example.com\r\nTo: b@x.org'),
      {
        ...plain,
        authorization: 'Bearer app',
      },
    );
    expect(app.status).toBe(202);
  });

  it('MIME: From must be the mailbox or a Send As address; Bcc is removed on delivery', async () => {
    const plain = { 'content-type': 'text/plain' };
    const denied = await call(
      'POST',
      '/users/ann@example.com/sendMail',
      mime('From: boss@example.com\r\nTo: b@x.org'),
      plain,
    );
    expect([denied.status, denied.code]).toEqual([403, 'ErrorSendAsDenied']);
    const ok = await call(
      'POST',
      '/users/ann@example.com/sendMail',
      mime('From: shared@example.com\r\nTo: b@x.org\r\nBcc: c@x.org,\r\n d@x.org\r\nSubject: s'),
      plain,
    );
    expect(ok.status).toBe(202);
    expect(graph.delivered[0]!.recipients).toEqual(['b@x.org', 'c@x.org', 'd@x.org']);
    expect(graph.delivered[0]!.mime!.toString()).toBe(
      'From: shared@example.com\r\nTo: b@x.org\r\nSubject: s\r\n\r\nbody\r\n',
    );
  });

  it('refuses bodies over 4,000,000 bytes with 413 and messages over the size limit with ErrorMessageSizeExceeded', async () => {
    const over = await call('POST', '/users/ann@example.com/sendMail', 'A'.repeat(4_000_004), {
      'content-type': 'text/plain',
    });
    expect(over.status).toBe(413);
    const big = Buffer.concat([
      Buffer.from('From: ann@example.com\r\nTo: b@x.org\r\n\r\n'),
      Buffer.alloc(2_900_000, 0x61),
    ]);
    const limited = await startFakeGraph({ verifyToken: (t) => tokens[t], maxMessageBytes: 2_000_000 });
    try {
      const r = await fetch(`${limited.url}/users/ann@example.com/sendMail`, {
        method: 'POST',
        body: big.toString('base64'),
        headers: { authorization: 'Bearer ann', 'content-type': 'text/plain' },
      });
      expect(r.status).toBe(413);
      expect(await r.text()).toContain('ErrorMessageSizeExceeded');
    } finally {
      await limited.close();
    }
  });

  it('refuses an attachment POST of 3,000,000 decoded bytes (at the limit minus one passes)', async () => {
    const id = await draft();
    const post = (n: number) =>
      call(
        'POST',
        `/users/ann@example.com/messages/${id}/attachments`,
        JSON.stringify({
          '@odata.type': '#microsoft.graph.fileAttachment',
          name: 'a',
          contentBytes: Buffer.alloc(n).toString('base64'),
        }),
        json,
      );
    expect((await post(2_999_000)).status).toBe(201);
    // 3,000,000 bytes are exactly 4,000,000 in base64: the JSON around them makes the request itself too big.
    expect((await post(3_000_000)).status).toBe(413);
  });

  it('upload sessions: no Authorization, ranges in order, at most 4,000,000 bytes, exact Content-Range', async () => {
    const id = await draft();
    const url = await session(id, 10);
    const put = (body: Buffer, range: string, auth?: string) =>
      fetch(url, {
        method: 'PUT',
        body,
        headers: { 'content-range': range, ...(auth ? { authorization: auth } : {}) },
      });
    expect((await put(Buffer.alloc(4), 'bytes 0-3/10', 'Bearer ann')).status).toBe(401);
    expect((await put(Buffer.alloc(4), 'bytes 4-7/10')).status).toBe(400); // out of order
    expect((await put(Buffer.alloc(4), 'bytes 0-4/10')).status).toBe(400); // length mismatch
    expect((await put(Buffer.alloc(4), 'bytes 0-3/11')).status).toBe(400); // wrong total
    expect((await put(Buffer.alloc(4), '0-3/10')).status).toBe(400);
    const first = await put(Buffer.alloc(4), 'bytes 0-3/10');
    expect(first.status).toBe(200);
    expect(((await first.json()) as { nextExpectedRanges: string[] }).nextExpectedRanges).toEqual(['4-']);
    // Sending with the upload unfinished is refused.
    expect((await call('POST', `/users/ann@example.com/messages/${id}/send`)).status).toBe(400);
    expect((await put(Buffer.alloc(6, 1), 'bytes 4-9/10')).status).toBe(201);
    expect((await call('POST', `/users/ann@example.com/messages/${id}/send`)).status).toBe(202);
    expect(graph.delivered[0]!.attachments[0]!.bytes).toEqual(
      Buffer.concat([Buffer.alloc(4), Buffer.alloc(6, 1)]),
    );

    const big = await session(await draft(), 5_000_000);
    const tooBig = await fetch(big, {
      method: 'PUT',
      body: Buffer.alloc(4_000_001),
      headers: { 'content-range': 'bytes 0-4000000/5000000' },
    });
    expect(tooBig.status).toBe(400);
  });

  it('failNext answers the next requests with the status and Retry-After given', async () => {
    graph.failNext(1, 429, { retryAfter: 5 });
    const r = await call('POST', '/users/ann@example.com/sendMail', mime('To: b@x.org'), {
      'content-type': 'text/plain',
    });
    expect([r.status, r.code, r.headers.get('retry-after')]).toEqual([429, 'ApplicationThrottled', '5']);
    const next = await call('POST', '/users/ann@example.com/sendMail', mime('To: b@x.org'), {
      'content-type': 'text/plain',
    });
    expect(next.status).toBe(202);
  });

  it('verifyWithFakeAuth: tokens of the fake authorization server, with the scopes it grants', async () => {
    const auth = await startFakeAuthServer({ scope: 'https://graph.microsoft.com/Mail.Send offline_access' });
    const outlookOnly = await startFakeAuthServer({
      scope: 'https://outlook.office.com/SMTP.Send offline_access',
    });
    const g = await startFakeGraph({ verifyToken: verifyWithFakeAuth(auth) });
    const g2 = await startFakeGraph({ verifyToken: verifyWithFakeAuth(outlookOnly) });
    try {
      const send = (base: string, token: string) =>
        fetch(`${base}/users/ann@example.com/sendMail`, {
          method: 'POST',
          body: mime('From: ann@example.com\r\nTo: b@x.org'),
          headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
        });
      expect((await send(g.url, auth.issueGrant('ann@example.com').accessToken)).status).toBe(202);
      expect((await send(g.url, 'made-up')).status).toBe(401);
      expect((await send(g.url, auth.issueGrant('bob@example.com').accessToken)).status).toBe(403);
      expect((await send(g2.url, outlookOnly.issueGrant('ann@example.com').accessToken)).status).toBe(403);
    } finally {
      await Promise.all([g.close(), g2.close(), auth.close(), outlookOnly.close()]);
    }
  });
});

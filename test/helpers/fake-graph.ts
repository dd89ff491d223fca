/**
 * An in-process fake of the part of Microsoft Graph that sends mail (real HTTP on 127.0.0.1, port 0):
 * MIME and JSON `sendMail`, drafts, attachments by POST and through upload sessions, `send`, and
 * deleting a draft. The Graph sender's integration tests and the SMTP end-to-end tests use it, so add
 * to it rather than change it.
 *
 * It is strict where Graph is strict, and stricter where Graph's limit is fuzzy, so a request that
 * passes here passes there: bodies over 4,000,000 bytes get 413; an attachment POST of 3,000,000
 * decoded bytes or more gets 413; upload-session PUTs must come in order, each at most 4,000,000
 * bytes, with a Content-Range that matches, and without an Authorization header (the upload URL is
 * pre-authorized); a draft with an unfinished upload cannot be sent. Every API request needs a Bearer
 * token that `verifyToken` accepts (401 InvalidAuthenticationToken), holding the Mail.Send scope and
 * issued to the mailbox in the path (403 ErrorAccessDenied), and a From other than the mailbox gets
 * 403 ErrorSendAsDenied. What gets "delivered" is recorded as Exchange would deliver it: MIME with
 * the Bcc header removed, recipients from the To, Cc and Bcc headers (MIME) or the recipient lists
 * (JSON and drafts).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { simpleParser, type AddressObject } from 'mailparser';
import type { FakeAuthServer } from './fake-auth-server.js';

export interface FakeGraphOptions {
  /** Who a Bearer token belongs to and what it may do; undefined = not a valid token (401). */
  verifyToken(token: string): { email: string; scopes: string[] } | undefined;
  /** The scope a token must hold (default 'https://graph.microsoft.com/Mail.Send'; its last segment matches too). */
  requiredScope?: string;
  /** Token owner -> other mailboxes it may send for ('*': any, as an app-only token with Mail.Send). */
  delegates?: Record<string, string[]>;
  /** Addresses any mailbox may put in From besides its own (Send As granted). */
  sendAs?: string[];
  /** The tenant's message size limit on the encoded message (default 35 MiB): 413 ErrorMessageSizeExceeded. */
  maxMessageBytes?: number;
}

export interface FakeGraphAttachment {
  name: string;
  contentType: string;
  bytes: Buffer;
  isInline: boolean;
  contentId?: string;
}

export interface FakeGraphDelivery {
  mailbox: string;
  via: 'mime' | 'json' | 'draft';
  /** To + Cc + Bcc, as Graph would deliver, lowercased, in header / list order. */
  recipients: string[];
  /** MIME sendMail: the exact decoded bytes with the Bcc header removed. */
  mime?: Buffer;
  /** JSON sendMail and drafts: the message resource as sent (attachments apart). */
  draft?: Record<string, unknown>;
  attachments: FakeGraphAttachment[];
  savedToSentItems: boolean;
}

export interface FakeGraphCounts {
  /** Every request, upload PUTs included. */
  requests: number;
  sendMailMime: number;
  sendMailJson: number;
  createDraft: number;
  attachmentPost: number;
  uploadSession: number;
  uploadPut: number;
  send: number;
  deleteDraft: number;
  /** 401 answers. */
  unauthorized: number;
  /** Answers failNext made up. */
  injected: number;
}

export interface FakeGraphRequestRecord {
  method: string;
  /** Path without the query. */
  path: string;
  status: number;
  /** Request body bytes. */
  bytes: number;
  authorization: boolean;
  contentRange: string | undefined;
}

export interface FakeGraph {
  /** The API base, `http://127.0.0.1:PORT/v1.0`: the sender's graphUrl. */
  readonly url: string;
  readonly options: FakeGraphOptions;
  readonly delivered: FakeGraphDelivery[];
  readonly counts: FakeGraphCounts;
  readonly requests: FakeGraphRequestRecord[];
  /** Drafts created and neither sent nor deleted. */
  readonly openDrafts: number;
  /** The next n API requests (not upload PUTs) get this status, e.g. 429 or 503, with Retry-After if given. */
  failNext(n: number, status: number, options?: { retryAfter?: string | number; code?: string }): void;
  /** Every answer waits this long first (a slow Graph, for timeouts and hang-ups). */
  setDelay(ms: number): void;
  close(): Promise<void>;
}

const MAX_REQUEST_BYTES = 4_000_000;
const MAX_ATTACHMENT_POST_BYTES = 3_000_000;
const MAX_UPLOAD_RANGE_BYTES = 4_000_000;
const DEFAULT_MAX_MESSAGE_BYTES = 35 * 1024 * 1024;

interface UploadSession {
  id: string;
  draft: Draft;
  name: string;
  contentType: string;
  size: number;
  isInline: boolean;
  contentId?: string;
  chunks: Buffer[];
  received: number;
}

interface Draft {
  id: string;
  mailbox: string;
  message: Record<string, unknown>;
  attachments: FakeGraphAttachment[];
  uploads: UploadSession[];
}

class Answer extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const base64Re = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(text: string, what: string): Buffer {
  if (!base64Re.test(text)) throw new Answer(400, 'ErrorInvalidBase64String', `${what} is not valid base64.`);
  return Buffer.from(text, 'base64');
}

const encodedSize = (n: number): number => Math.ceil(n / 3) * 4;

/** Exchange removes the Bcc field (with its continuation lines) before delivery. */
function withoutBcc(mime: Buffer): Buffer {
  const text = mime.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const headEnd = end === -1 ? text.length : end + 2;
  const head = text.slice(0, headEnd).replace(/^bcc:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*/gim, '');
  return Buffer.from(head + text.slice(headEnd), 'latin1');
}

function addressList(header: AddressObject | AddressObject[] | undefined): string[] {
  const objects = header === undefined ? [] : Array.isArray(header) ? header : [header];
  return objects.flatMap((o) =>
    o.value.flatMap((a) => (a.group ?? [a]).flatMap((m) => (m.address ? [m.address.toLowerCase()] : []))),
  );
}

function recipientList(value: unknown, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Answer(400, 'RequestBodyRead', `${field} must be an array.`);
  return value.map((r: unknown) => {
    const address = (r as { emailAddress?: { address?: unknown } })?.emailAddress?.address;
    if (typeof address !== 'string' || !address.includes('@')) {
      throw new Answer(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid.');
    }
    return address.toLowerCase();
  });
}

function messageRecipients(message: Record<string, unknown>): string[] {
  return [
    ...recipientList(message.toRecipients, 'toRecipients'),
    ...recipientList(message.ccRecipients, 'ccRecipients'),
    ...recipientList(message.bccRecipients, 'bccRecipients'),
  ];
}

function fileAttachment(value: unknown): FakeGraphAttachment {
  const a = value as Record<string, unknown>;
  if (a['@odata.type'] !== '#microsoft.graph.fileAttachment' || typeof a.name !== 'string') {
    throw new Answer(400, 'ErrorInvalidAttachment', 'Only named file attachments are supported here.');
  }
  if (typeof a.contentBytes !== 'string')
    throw new Answer(400, 'ErrorInvalidAttachment', 'contentBytes missing.');
  const bytes = decodeBase64(a.contentBytes, 'contentBytes');
  return {
    name: a.name,
    contentType: typeof a.contentType === 'string' ? a.contentType : 'application/octet-stream',
    bytes,
    isInline: a.isInline === true,
    ...(typeof a.contentId === 'string' ? { contentId: a.contentId } : {}),
  };
}

function parseJson(body: Buffer): Record<string, unknown> {
  try {
    const value = JSON.parse(body.toString('utf8')) as unknown;
    if (typeof value === 'object' && value !== null && !Array.isArray(value))
      return value as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw new Answer(400, 'RequestBodyRead', 'The request body is not a JSON object.');
}

/**
 * `verifyToken` backed by the fake authorization server: its live access tokens, owned by the email
 * they were issued for, holding the scopes that server grants (`options.scope`).
 */
export function verifyWithFakeAuth(
  auth: Pick<FakeAuthServer, 'describeAccessToken'>,
): FakeGraphOptions['verifyToken'] {
  return (token) => {
    // The scopes this very token was issued with: a mail token presented to Graph lacks Mail.Send.
    const described = auth.describeAccessToken(token);
    if (described === undefined) return undefined;
    return { email: described.owner, scopes: described.scopes };
  };
}

export async function startFakeGraph(options: FakeGraphOptions): Promise<FakeGraph> {
  const requiredScope = options.requiredScope ?? 'https://graph.microsoft.com/Mail.Send';
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const delivered: FakeGraphDelivery[] = [];
  const requests: FakeGraphRequestRecord[] = [];
  const counts: FakeGraphCounts = {
    requests: 0,
    sendMailMime: 0,
    sendMailJson: 0,
    createDraft: 0,
    attachmentPost: 0,
    uploadSession: 0,
    uploadPut: 0,
    send: 0,
    deleteDraft: 0,
    unauthorized: 0,
    injected: 0,
  };
  const drafts = new Map<string, Draft>();
  const uploads = new Map<string, UploadSession>();
  const failures: { status: number; retryAfter?: string | number; code?: string }[] = [];
  let delayMs = 0;
  const timers = new Set<NodeJS.Timeout>();
  let origin = '';

  function checkToken(req: IncomingMessage, mailbox: string): void {
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer (\S+)$/.exec(auth);
    const who = m ? options.verifyToken(m[1]!) : undefined;
    if (who === undefined) {
      counts.unauthorized++;
      throw new Answer(401, 'InvalidAuthenticationToken', 'Access token is empty or invalid.');
    }
    const short = requiredScope.slice(requiredScope.lastIndexOf('/') + 1);
    if (!who.scopes.some((s) => s === requiredScope || s === short)) {
      throw new Answer(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.');
    }
    const owner = who.email.toLowerCase();
    const allowed = (options.delegates?.[owner] ?? []).map((d) => d.toLowerCase());
    if (owner !== mailbox && !allowed.includes('*') && !allowed.includes(mailbox)) {
      throw new Answer(403, 'ErrorAccessDenied', 'Access is denied. Check credentials and try again.');
    }
  }

  function checkFrom(mailbox: string, from: string | undefined): void {
    const address = (from ?? mailbox).toLowerCase();
    const allowed = (options.sendAs ?? []).map((a) => a.toLowerCase());
    if (address !== mailbox && !allowed.includes(address)) {
      throw new Answer(
        403,
        'ErrorSendAsDenied',
        'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.',
      );
    }
  }

  function checkSize(bytes: number): void {
    if (bytes > maxMessageBytes) {
      throw new Answer(413, 'ErrorMessageSizeExceeded', 'The message exceeds the maximum supported size.');
    }
  }

  async function sendMime(mailbox: string, body: Buffer): Promise<void> {
    counts.sendMailMime++;
    const mime = decodeBase64(body.toString('latin1'), 'The MIME content');
    checkSize(mime.length);
    const parsed = await simpleParser(mime, {
      skipHtmlToText: true,
      skipTextToHtml: true,
      checksumAlgo: false,
    });
    const recipients = [...addressList(parsed.to), ...addressList(parsed.cc), ...addressList(parsed.bcc)];
    if (recipients.length === 0) {
      throw new Answer(400, 'ErrorInvalidRecipients', 'At least one recipient is required.');
    }
    checkFrom(mailbox, parsed.from?.value[0]?.address);
    delivered.push({
      mailbox,
      via: 'mime',
      recipients,
      mime: withoutBcc(mime),
      attachments: [],
      savedToSentItems: true,
    });
  }

  function sendJson(mailbox: string, body: Buffer): void {
    counts.sendMailJson++;
    const request = parseJson(body);
    const message = request.message as Record<string, unknown> | undefined;
    if (typeof message !== 'object' || message === null)
      throw new Answer(400, 'RequestBodyRead', 'message missing.');
    const recipients = messageRecipients(message);
    if (recipients.length === 0)
      throw new Answer(400, 'ErrorInvalidRecipients', 'At least one recipient is required.');
    const attachments = ((message.attachments as unknown[] | undefined) ?? []).map(fileAttachment);
    checkFrom(
      mailbox,
      (message.from as { emailAddress?: { address?: string } } | undefined)?.emailAddress?.address,
    );
    const { attachments: _dropped, ...draft } = message;
    delivered.push({
      mailbox,
      via: 'json',
      recipients,
      draft,
      attachments,
      savedToSentItems: request.saveToSentItems !== false,
    });
  }

  function draftSize(draft: Draft): number {
    const text = JSON.stringify(draft.message).length;
    return (
      text +
      draft.attachments.reduce((n, a) => n + encodedSize(a.bytes.length), 0) +
      draft.uploads.reduce((n, u) => n + encodedSize(u.size), 0)
    );
  }

  function findDraft(mailbox: string, id: string): Draft {
    const draft = drafts.get(id);
    if (draft === undefined || draft.mailbox !== mailbox) {
      throw new Answer(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');
    }
    return draft;
  }

  function upload(req: IncomingMessage, res: ServerResponse, id: string, body: Buffer, bytes: number): void {
    counts.uploadPut++;
    const session = uploads.get(id);
    if (session === undefined) throw new Answer(404, 'ErrorItemNotFound', 'Upload session not found.');
    if (req.headers.authorization !== undefined) {
      // The upload URL carries its own credential; Graph's token is for another audience there.
      throw new Answer(
        401,
        'InvalidAudienceForResource',
        'Do not send an Authorization header to the upload URL.',
      );
    }
    if (bytes > MAX_UPLOAD_RANGE_BYTES) throw new Answer(400, 'InvalidRange', 'A range may be at most 4 MB.');
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(req.headers['content-range'] ?? '');
    if (!m) throw new Answer(400, 'InvalidContentRange', 'Content-Range must be "bytes a-b/size".');
    const [from, to, size] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (
      size !== session.size ||
      from !== session.received ||
      to < from ||
      to >= size ||
      to - from + 1 !== body.length
    ) {
      throw new Answer(400, 'InvalidContentRange', `Expected the range starting at ${session.received}.`);
    }
    session.chunks.push(body);
    session.received += body.length;
    if (session.received < session.size) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          expirationDateTime: new Date(Date.now() + 3_600_000).toISOString(),
          nextExpectedRanges: [`${session.received}-`],
        }),
      );
      return;
    }
    uploads.delete(id);
    session.draft.uploads = session.draft.uploads.filter((u) => u !== session);
    session.draft.attachments.push({
      name: session.name,
      contentType: session.contentType,
      bytes: Buffer.concat(session.chunks),
      isInline: session.isInline,
      ...(session.contentId !== undefined ? { contentId: session.contentId } : {}),
    });
    res.writeHead(201, { location: `${origin}/v1.0/attachments/${id}` });
    res.end();
  }

  async function api(
    req: IncomingMessage,
    res: ServerResponse,
    parts: string[],
    body: Buffer,
  ): Promise<void> {
    // parts: ['users', mailbox, ...rest]
    if (parts[0] !== 'users' || parts[1] === undefined)
      throw new Answer(404, 'ResourceNotFound', 'Unknown path.');
    const mailbox = decodeURIComponent(parts[1]).toLowerCase();
    const rest = parts.slice(2);
    const failure = failures.shift();
    if (failure !== undefined) {
      counts.injected++;
      const headers: Record<string, string> = {};
      if (failure.retryAfter !== undefined) headers['retry-after'] = String(failure.retryAfter);
      const code = failure.code ?? (failure.status === 429 ? 'ApplicationThrottled' : 'ServiceUnavailable');
      throw new Answer(failure.status, code, 'Injected by the test.', headers);
    }
    checkToken(req, mailbox);
    const route = `${req.method} ${rest.map((p, i) => (i === 1 ? ':id' : p)).join('/')}`;
    switch (route) {
      case 'POST sendMail': {
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (type === 'text/plain') await sendMime(mailbox, body);
        else if (type === 'application/json') sendJson(mailbox, body);
        else throw new Answer(415, 'UnsupportedMediaType', 'Use text/plain (MIME) or application/json.');
        res.writeHead(202);
        res.end();
        return;
      }
      case 'POST messages': {
        counts.createDraft++;
        const message = parseJson(body);
        if (message.attachments !== undefined) {
          throw new Answer(400, 'ErrorInvalidRequest', 'This fake takes attachments separately only.');
        }
        messageRecipients(message); // validates
        const id = `AAMk${randomBytes(12).toString('hex')}`;
        const draft: Draft = { id, mailbox, message, attachments: [], uploads: [] };
        checkSize(draftSize(draft));
        drafts.set(id, draft);
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ...message, id, isDraft: true }));
        return;
      }
      case 'POST messages/:id/attachments': {
        counts.attachmentPost++;
        const draft = findDraft(mailbox, rest[1]!);
        const attachment = fileAttachment(parseJson(body));
        if (attachment.bytes.length >= MAX_ATTACHMENT_POST_BYTES) {
          throw new Answer(
            413,
            'RequestEntityTooLarge',
            'Attachments of 3 MB or more need an upload session.',
          );
        }
        draft.attachments.push(attachment);
        checkSize(draftSize(draft));
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: `att${draft.attachments.length}`, name: attachment.name }));
        return;
      }
      case 'POST messages/:id/attachments/createUploadSession': {
        counts.uploadSession++;
        const draft = findDraft(mailbox, rest[1]!);
        const item = parseJson(body).AttachmentItem as Record<string, unknown> | undefined;
        if (
          item?.attachmentType !== 'file' ||
          typeof item.name !== 'string' ||
          typeof item.size !== 'number' ||
          !Number.isInteger(item.size) ||
          item.size <= 0
        ) {
          throw new Answer(
            400,
            'ErrorInvalidRequest',
            'AttachmentItem needs attachmentType file, name and size.',
          );
        }
        const id = randomBytes(16).toString('hex');
        const session: UploadSession = {
          id,
          draft,
          name: item.name,
          contentType: typeof item.contentType === 'string' ? item.contentType : 'application/octet-stream',
          size: item.size,
          isInline: item.isInline === true,
          ...(typeof item.contentId === 'string' ? { contentId: item.contentId } : {}),
          chunks: [],
          received: 0,
        };
        draft.uploads.push(session);
        checkSize(draftSize(draft));
        uploads.set(id, session);
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            uploadUrl: `${origin}/upload/${id}?authtoken=${randomBytes(8).toString('hex')}`,
            expirationDateTime: new Date(Date.now() + 3_600_000).toISOString(),
            nextExpectedRanges: ['0-'],
          }),
        );
        return;
      }
      case 'POST messages/:id/send': {
        counts.send++;
        const draft = findDraft(mailbox, rest[1]!);
        if (draft.uploads.length > 0) {
          throw new Answer(400, 'ErrorInvalidRequest', 'An attachment upload has not finished.');
        }
        checkSize(draftSize(draft));
        const recipients = messageRecipients(draft.message);
        if (recipients.length === 0) {
          throw new Answer(400, 'ErrorInvalidRecipients', 'At least one recipient is required.');
        }
        const from = (draft.message.from as { emailAddress?: { address?: string } } | undefined)?.emailAddress
          ?.address;
        checkFrom(mailbox, from);
        drafts.delete(draft.id);
        delivered.push({
          mailbox,
          via: 'draft',
          recipients,
          draft: draft.message,
          attachments: draft.attachments,
          savedToSentItems: true,
        });
        res.writeHead(202);
        res.end();
        return;
      }
      case 'DELETE messages/:id': {
        counts.deleteDraft++;
        const draft = findDraft(mailbox, rest[1]!);
        drafts.delete(draft.id);
        for (const u of draft.uploads) uploads.delete(u.id);
        res.writeHead(204);
        res.end();
        return;
      }
      default:
        throw new Answer(400, 'BadRequest', `Unsupported request ${req.method} ${rest.join('/')}.`);
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    counts.requests++;
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      // Keep reading past the limit (so the 413 reaches the client) but stop storing.
      if (bytes <= MAX_REQUEST_BYTES) chunks.push(chunk);
    }
    const path = (req.url ?? '/').split('?')[0]!;
    const record: FakeGraphRequestRecord = {
      method: req.method ?? '',
      path,
      status: 0,
      bytes,
      authorization: req.headers.authorization !== undefined,
      contentRange: req.headers['content-range'],
    };
    requests.push(record);
    res.on('finish', () => (record.status = res.statusCode));
    if (delayMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          timers.delete(t);
          resolve();
        }, delayMs);
        timers.add(t);
      });
      if (res.destroyed) return;
    }
    try {
      const body = Buffer.concat(chunks);
      const parts = path.split('/').filter((p) => p !== '');
      // An oversized range is the upload session's own 400; anything else over 4 MB is Graph's 413.
      if (parts[0] === 'upload' && req.method === 'PUT' && parts[1] !== undefined) {
        upload(req, res, parts[1], body, bytes);
      } else if (bytes > MAX_REQUEST_BYTES) {
        throw new Answer(413, 'RequestEntityTooLarge', 'The request is over 4 MB.');
      } else if (parts[0] === 'v1.0') await api(req, res, parts.slice(1), body);
      else throw new Answer(404, 'ResourceNotFound', 'Unknown path.');
    } catch (err) {
      const answer =
        err instanceof Answer
          ? err
          : new Answer(500, 'InternalServerError', `fake graph: ${(err as Error).message}`);
      res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      res.end(JSON.stringify({ error: { code: answer.code, message: answer.message } }));
    }
  }

  const server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: `${origin}/v1.0`,
    options,
    delivered,
    counts,
    requests,
    get openDrafts() {
      return drafts.size;
    },
    failNext(n, status, opts = {}) {
      for (let i = 0; i < n; i++) failures.push({ status, ...opts });
    },
    setDelay(ms) {
      delayMs = ms;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

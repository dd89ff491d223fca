/**
 * Sends one SMTP message through Microsoft Graph for one mailbox. Three ways, chosen per message:
 *
 * - MIME sendMail: the client's bytes, base64, in one request. Exact (headers, structure, signatures
 *   survive), so it is used whenever it can be: the base64 fits one request, the headers name exactly
 *   the envelope's recipients (after envelope-only ones are added as Bcc), and Sent Items is wanted
 *   (MIME sendMail always saves a copy; it has no saveToSentItems flag).
 * - JSON sendMail: the parsed message with its attachments inline, in one request, when that fits.
 *   It honours saveToSentItems and names the recipients explicitly.
 * - A draft: create it, attach (POST under 3 MB, upload sessions above), send. For what does not fit
 *   one request. Sent Items always gets a copy here too; a failure midway deletes the draft.
 *
 * Never throws: every failure, ours included, is a SendOutcome.
 */
import type { Logger } from 'pino';
import { GraphRequester, SendStopped } from './graph-request.js';
import {
  DEFAULT_GRAPH_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_BYTES,
  DRAFT_CLEANUP_TIMEOUT_MS,
  GRAPH_MAX_ATTACHMENT_POST_BYTES,
  GRAPH_MAX_REQUEST_BYTES,
  GRAPH_UPLOAD_CHUNK_BYTES,
} from './limits.js';
import { safeReason } from './outcomes.js';
import { planRecipients, type RecipientPlan } from './recipients.js';
import {
  buildStructuredMessage,
  fileAttachment,
  type StructuredAttachment,
  type StructuredMessage,
} from './structured.js';
import type { GraphThrottle } from './throttle.js';
import type { MessageSender, OutgoingMessage, SendOutcome } from './types.js';

export interface GraphSenderOptions {
  /** API base including the version, e.g. https://graph.microsoft.com/v1.0 (no trailing slash needed). */
  graphUrl: string;
  /** The mailbox whose /users/{mailbox} sends (user principal name or id). */
  mailbox: string;
  /** Keep a copy in Sent Items. MIME sendMail always does; false moves a message to the JSON path. */
  saveToSentItems: boolean;
  /** A Graph access token; forceRefresh after Graph said 401. Throws ProxyError 'needs-consent' or 'token-unavailable'. */
  accessToken(options: { forceRefresh: boolean }): Promise<string>;
  /** Shared across sessions: remembers Retry-After per mailbox so the next attempt before then gets 451 at once. */
  throttle: GraphThrottle;
  /** Per HTTP request (default DEFAULT_GRAPH_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Tests. */
  fetch?: typeof fetch;
  /** Never given tokens or message content. */
  logger?: Logger;
  /** The tenant's limit on the MIME size (default DEFAULT_MAX_MESSAGE_BYTES); over it: too-large without calling Graph. */
  maxMessageBytes?: number;
}

type Route = 'mime' | 'json' | 'draft';

/** base64 length of n bytes. */
function base64Length(n: number): number {
  return Math.ceil(n / 3) * 4;
}

export function createGraphSender(options: GraphSenderOptions): MessageSender {
  const base = options.graphUrl.replace(/\/+$/, '');
  const userUrl = `${base}/users/${encodeURIComponent(options.mailbox)}`;
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const log = options.logger;

  async function sendOne(message: OutgoingMessage, signal: AbortSignal): Promise<SendOutcome> {
    const started = Date.now();
    if (message.data.length > maxMessageBytes) {
      return {
        kind: 'too-large',
        reason: `the message has ${message.data.length} bytes; this mailbox sends at most ${maxMessageBytes}`,
      };
    }
    const wait = options.throttle.remainingSeconds(options.mailbox);
    if (wait !== undefined) {
      return {
        kind: 'temporary',
        reason: `Graph asked this mailbox to wait; ${wait} s left`,
        retryAfterSeconds: wait,
      };
    }
    if (message.recipients.length === 0) return { kind: 'rejected', reason: 'the message has no recipients' };

    const plan = planRecipients(message.data, message.recipients);
    const requester = new GraphRequester({
      mailbox: options.mailbox,
      accessToken: (o) => options.accessToken(o),
      throttle: options.throttle,
      timeoutMs: options.timeoutMs ?? DEFAULT_GRAPH_TIMEOUT_MS,
      fetch: options.fetch ?? fetch,
      logger: log,
      signal,
    });
    let route: Route = 'mime';
    let outcome: SendOutcome;
    try {
      const mimeFits = base64Length(plan.mime.length) <= GRAPH_MAX_REQUEST_BYTES;
      if (mimeFits && plan.headerOnly.length === 0 && options.saveToSentItems) {
        await sendMime(requester, plan);
      } else {
        route = 'json';
        const structured = await parse(message.data, plan);
        // The attachments' base64 alone decides most cases; only build the JSON when it might fit.
        const encoded = structured.attachments.reduce((n, a) => n + base64Length(a.content.length), 0);
        const json = encoded <= GRAPH_MAX_REQUEST_BYTES ? jsonSendMail(structured) : undefined;
        if (json !== undefined && Buffer.byteLength(json) <= GRAPH_MAX_REQUEST_BYTES) {
          await requester.request({
            method: 'POST',
            url: `${userUrl}/sendMail`,
            body: json,
            headers: { 'content-type': 'application/json' },
          });
        } else {
          route = 'draft';
          await sendDraft(requester, structured);
        }
      }
      outcome = { kind: 'sent' };
    } catch (err) {
      outcome =
        err instanceof SendStopped
          ? err.outcome
          : {
              kind: 'temporary',
              reason: safeReason(`internal error: ${(err as Error)?.message ?? String(err)}`),
            };
      if (!(err instanceof SendStopped)) log?.error({ err, mailbox: options.mailbox }, 'graph sender failed');
    }
    log?.info(
      {
        mailbox: options.mailbox,
        route,
        bytes: message.data.length,
        recipients: message.recipients.length,
        addedBcc: plan.added.length,
        headerOnly: plan.headerOnly.length,
        outcome: outcome.kind,
        reason: outcome.kind === 'sent' ? undefined : outcome.reason,
        ms: Date.now() - started,
      },
      'graph send',
    );
    return outcome;
  }

  async function sendMime(requester: GraphRequester, plan: RecipientPlan): Promise<void> {
    await requester.request({
      method: 'POST',
      url: `${userUrl}/sendMail`,
      body: plan.mime.toString('base64'),
      headers: { 'content-type': 'text/plain' },
    });
  }

  async function parse(data: Buffer, plan: RecipientPlan): Promise<StructuredMessage> {
    try {
      return await buildStructuredMessage(data, plan, options.mailbox);
    } catch (err) {
      throw new SendStopped({
        kind: 'rejected',
        reason: safeReason(`the message could not be parsed: ${(err as Error)?.message ?? String(err)}`),
      });
    }
  }

  function jsonSendMail(structured: StructuredMessage): string {
    const message = { ...structured.message, attachments: structured.attachments.map(fileAttachment) };
    return JSON.stringify({ message, saveToSentItems: options.saveToSentItems });
  }

  async function sendDraft(requester: GraphRequester, structured: StructuredMessage): Promise<void> {
    const draftBody = JSON.stringify(structured.message);
    if (Buffer.byteLength(draftBody) > GRAPH_MAX_REQUEST_BYTES) {
      throw new SendStopped({
        kind: 'too-large',
        reason: `the message text alone is over Graph's ${GRAPH_MAX_REQUEST_BYTES}-byte request limit`,
      });
    }
    const created = await requester.request({
      method: 'POST',
      url: `${userUrl}/messages`,
      body: draftBody,
      headers: { 'content-type': 'application/json' },
    });
    const id = draftId(created.text);
    const draftUrl = `${userUrl}/messages/${encodeURIComponent(id)}`;
    try {
      for (const attachment of structured.attachments) await attach(requester, draftUrl, attachment);
      await requester.request({ method: 'POST', url: `${draftUrl}/send` });
    } catch (err) {
      await deleteDraft(requester, draftUrl);
      throw err;
    }
  }

  async function attach(requester: GraphRequester, draftUrl: string, a: StructuredAttachment): Promise<void> {
    if (a.content.length < GRAPH_MAX_ATTACHMENT_POST_BYTES) {
      const body = JSON.stringify(fileAttachment(a));
      if (Buffer.byteLength(body) <= GRAPH_MAX_REQUEST_BYTES) {
        await requester.request({
          method: 'POST',
          url: `${draftUrl}/attachments`,
          body,
          headers: { 'content-type': 'application/json' },
        });
        return;
      }
    }
    const item: Record<string, unknown> = {
      attachmentType: 'file',
      name: a.name,
      size: a.content.length,
      contentType: a.contentType,
      isInline: a.isInline,
    };
    if (a.contentId !== undefined) item.contentId = a.contentId;
    const session = await requester.request({
      method: 'POST',
      url: `${draftUrl}/attachments/createUploadSession`,
      body: JSON.stringify({ AttachmentItem: item }),
      headers: { 'content-type': 'application/json' },
    });
    const uploadUrl = checkedUploadUrl(session.text);
    const size = a.content.length;
    for (let offset = 0; offset < size; offset += GRAPH_UPLOAD_CHUNK_BYTES) {
      const end = Math.min(size, offset + GRAPH_UPLOAD_CHUNK_BYTES);
      await requester.request({
        method: 'PUT',
        url: uploadUrl,
        body: a.content.subarray(offset, end),
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `bytes ${offset}-${end - 1}/${size}`,
        },
        authorize: false,
      });
    }
  }

  /**
   * Graph gives the upload URL; it must be on the same scheme as graphUrl (https in production), so a
   * confused answer cannot send attachment bytes in the clear.
   */
  function checkedUploadUrl(text: string): string {
    let url: URL | undefined;
    try {
      const raw = (JSON.parse(text) as { uploadUrl?: unknown }).uploadUrl;
      if (typeof raw === 'string') url = new URL(raw);
    } catch {
      url = undefined;
    }
    if (url === undefined || url.protocol !== new URL(base).protocol) {
      throw new SendStopped({
        kind: 'temporary',
        reason: 'Graph gave no usable upload URL for an attachment',
      });
    }
    return url.href;
  }

  async function deleteDraft(requester: GraphRequester, draftUrl: string): Promise<void> {
    try {
      // Not under the client's signal: a client that hung up still should not leave a draft behind.
      await requester.request({
        method: 'DELETE',
        url: draftUrl,
        signal: AbortSignal.timeout(DRAFT_CLEANUP_TIMEOUT_MS),
      });
    } catch (err) {
      log?.warn(
        { mailbox: options.mailbox, outcome: err instanceof SendStopped ? err.outcome.kind : undefined },
        'graph draft left behind after a failed send',
      );
    }
  }

  return {
    send: (message, signal) =>
      sendOne(message, signal).catch((err: unknown): SendOutcome => ({
        kind: 'temporary',
        reason: safeReason(`internal error: ${(err as Error)?.message ?? String(err)}`),
      })),
  };
}

function draftId(text: string): string {
  try {
    const id = (JSON.parse(text) as { id?: unknown }).id;
    if (typeof id === 'string' && id !== '') return id;
  } catch {
    // fall through
  }
  throw new SendStopped({ kind: 'temporary', reason: 'Graph created a draft but gave no id for it' });
}

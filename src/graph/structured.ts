/**
 * The structured form of a message, for when MIME sendMail cannot carry it (too big for one request,
 * recipients that differ from the headers, or saveToSentItems off): mailparser takes the MIME apart
 * and this builds Graph's `message` resource from it, recipients from the SMTP envelope. What this
 * form cannot keep (Message-ID, References, most headers, the multipart structure) is listed in
 * docs/graph.md.
 */
import { simpleParser, type AddressObject, type Attachment, type ParsedMail } from 'mailparser';
import { GRAPH_MAX_INTERNET_HEADERS } from './limits.js';
import { addressKey, type RecipientPlan } from './recipients.js';

interface Recipient {
  emailAddress: { address: string; name?: string };
}

/** Graph's `message` resource, the parts we set. */
export interface GraphMessage {
  subject: string;
  body: { contentType: 'html' | 'text'; content: string };
  toRecipients: Recipient[];
  ccRecipients: Recipient[];
  bccRecipients: Recipient[];
  replyTo?: Recipient[];
  from?: Recipient;
  importance?: 'low' | 'normal' | 'high';
  internetMessageHeaders?: { name: string; value: string }[];
  attachments?: GraphFileAttachment[];
}

export interface GraphFileAttachment {
  '@odata.type': '#microsoft.graph.fileAttachment';
  name: string;
  contentType: string;
  contentBytes: string;
  isInline: boolean;
  contentId?: string;
}

/** One attachment, decoded, as the draft path uploads it. */
export interface StructuredAttachment {
  name: string;
  contentType: string;
  content: Buffer;
  isInline: boolean;
  contentId: string | undefined;
}

export interface StructuredMessage {
  message: GraphMessage;
  attachments: StructuredAttachment[];
}

function recipient(address: string, name: string): Recipient {
  return name === '' ? { emailAddress: { address } } : { emailAddress: { address, name } };
}

function addresses(header: AddressObject | AddressObject[] | undefined): Recipient[] {
  const objects = header === undefined ? [] : Array.isArray(header) ? header : [header];
  return objects.flatMap((o) =>
    o.value.flatMap((a) =>
      (a.group ?? [a]).flatMap((m) => (m.address ? [recipient(m.address, m.name)] : [])),
    ),
  );
}

/**
 * Custom headers Graph will take: `x-` ones only, at most five, never Exchange's own (Exchange
 * strips or refuses those from senders).
 */
function customHeaders(parsed: ParsedMail): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  for (const { key, line } of parsed.headerLines) {
    if (!key.startsWith('x-') || key.startsWith('x-ms-exchange-')) continue;
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim();
    const value = line
      .slice(colon + 1)
      .replace(/\r?\n(?=[ \t])/g, '')
      .trim();
    if (value === '') continue;
    out.push({ name, value });
    if (out.length === GRAPH_MAX_INTERNET_HEADERS) break;
  }
  return out;
}

function importance(parsed: ParsedMail): GraphMessage['importance'] {
  const priority = parsed.headers.get('priority');
  return priority === 'high' || priority === 'low' || priority === 'normal' ? priority : undefined;
}

function attachmentName(attachment: Attachment, index: number): string {
  if (attachment.filename !== undefined && attachment.filename !== '') return attachment.filename;
  if (attachment.contentType === 'message/rfc822') return `message-${index + 1}.eml`;
  if (attachment.contentType === 'text/calendar') return `invite-${index + 1}.ics`;
  return `attachment-${index + 1}`;
}

/** Parses the message and builds the structured form; recipients come from the plan (the envelope). */
export async function buildStructuredMessage(
  data: Buffer,
  plan: RecipientPlan,
  mailbox: string,
): Promise<StructuredMessage> {
  const parsed = await simpleParser(data, {
    // cid: links must stay cid: links (inline attachments carry the matching contentId); the rest
    // is work whose result we would throw away.
    keepCidLinks: true,
    skipHtmlToText: true,
    skipTextToHtml: true,
    skipTextLinks: true,
    skipImageLinks: true,
    checksumAlgo: false,
  });
  const split: Record<'to' | 'cc' | 'bcc', Recipient[]> = { to: [], cc: [], bcc: [] };
  for (const r of plan.envelope) split[r.kind ?? 'bcc'].push(recipient(r.address, r.name));

  const message: GraphMessage = {
    subject: parsed.subject ?? '',
    body:
      typeof parsed.html === 'string'
        ? { contentType: 'html', content: parsed.html }
        : { contentType: 'text', content: parsed.text ?? '' },
    toRecipients: split.to,
    ccRecipients: split.cc,
    bccRecipients: split.bcc,
  };
  const replyTo = addresses(parsed.replyTo);
  if (replyTo.length > 0) message.replyTo = replyTo;
  const from = addresses(parsed.from)[0];
  if (from !== undefined && addressKey(from.emailAddress.address) !== addressKey(mailbox))
    message.from = from;
  const level = importance(parsed);
  if (level !== undefined) message.importance = level;
  const headers = customHeaders(parsed);
  if (headers.length > 0) message.internetMessageHeaders = headers;

  const attachments = parsed.attachments.map((a, i): StructuredAttachment => ({
    name: attachmentName(a, i),
    contentType: a.contentType,
    content: a.content,
    // Inline means "shown in the body": a part with a Content-ID that the HTML can point at.
    isInline: a.cid !== undefined && (a.related === true || a.contentDisposition === 'inline'),
    contentId: a.cid,
  }));
  return { message, attachments };
}

/** The attachment as a `fileAttachment` for a POST or an inline sendMail. */
export function fileAttachment(a: StructuredAttachment): GraphFileAttachment {
  const out: GraphFileAttachment = {
    '@odata.type': '#microsoft.graph.fileAttachment',
    name: a.name,
    contentType: a.contentType,
    contentBytes: a.content.toString('base64'),
    isInline: a.isInline,
  };
  if (a.contentId !== undefined) out.contentId = a.contentId;
  return out;
}

/**
 * Who gets the message. SMTP delivers to the envelope (RCPT TO); Graph's MIME sendMail delivers to
 * the To, Cc and Bcc headers instead. The two agree when every envelope recipient is named in a
 * header and no header names anyone else. A recipient only in the envelope is a Bcc the client
 * already stripped from the headers (RFC 5322 section 3.6.3): it is added back as a `Bcc:` header,
 * which Exchange removes before delivery, so nobody sees it. A recipient only in a header must not
 * get the message (it would under MIME), so the sender then takes the structured path, where the
 * recipients are given explicitly.
 *
 * Headers are read with mailparser's address parser (folding, RFC 2047 encoded words in display
 * names, groups, quoted local parts). The message bytes are treated as latin1 so offsets stay byte
 * offsets; only header values are decoded as UTF-8 (RFC 6532 headers under SMTPUTF8).
 */
import { domainToASCII } from 'node:url';
import { parseAddressHeader } from 'mailparser';

export type HeaderKind = 'to' | 'cc' | 'bcc';

export interface HeaderMailbox {
  kind: HeaderKind;
  name: string;
  address: string;
}

export interface RecipientPlan {
  /** The message for MIME sendMail: the original bytes with the envelope-only recipients in `Bcc:`. */
  mime: Buffer;
  /** Envelope recipients no header named (now in Bcc), in envelope order. */
  added: string[];
  /** Header addresses (To/Cc/Bcc) that are not envelope recipients: MIME would deliver to them. */
  headerOnly: string[];
  /** Each envelope recipient with the header that named it first (To before Cc before Bcc), if any. */
  envelope: { address: string; kind: HeaderKind | undefined; name: string }[];
}

interface HeaderField {
  /** Lowercase field name. */
  name: string;
  /** Byte offset of the field's first character. */
  start: number;
  /** The field as written, folding included, without its final line break (latin1). */
  raw: string;
}

interface HeaderBlock {
  fields: HeaderField[];
  /** Byte offset where the header block ends: its blank line, the first line that is no header, or the end. */
  end: number;
  /** The message's line break: CRLF, or a bare LF from a client that sends those. */
  eol: '\r\n' | '\n';
}

const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;

/**
 * The header fields of a message. Lines should end in CRLF; a message with bare LFs is read the same
 * way, so a header is never mistaken for the body (a Bcc added after the body would be visible).
 */
function readHeaderBlock(data: Buffer): HeaderBlock {
  const text = data.toString('latin1');
  const firstLf = text.indexOf('\n');
  const eol = firstLf > 0 && text[firstLf - 1] !== '\r' ? '\n' : '\r\n';
  const fields: HeaderField[] = [];
  let at = 0;
  while (at < text.length) {
    const lf = text.indexOf('\n', at);
    const next = lf === -1 ? text.length : lf + 1;
    const lineEnd = lf === -1 ? text.length : lf > at && text[lf - 1] === '\r' ? lf - 1 : lf;
    if (lineEnd === at) return { fields, end: at, eol }; // the blank line
    const ch = text[at];
    const last = fields[fields.length - 1];
    if ((ch === ' ' || ch === '\t') && last !== undefined) {
      // A continuation line (RFC 5322 folding) belongs to the field before it.
      last.raw = text.slice(last.start, lineEnd);
    } else {
      const colon = text.indexOf(':', at);
      const name = colon !== -1 && colon < lineEnd ? text.slice(at, colon).trimEnd() : '';
      // Not a header field: the header section ended without its blank line; what follows is body.
      if (!FIELD_NAME.test(name)) return { fields, end: at, eol };
      fields.push({ name: name.toLowerCase(), start: at, raw: text.slice(at, lineEnd) });
    }
    at = next;
  }
  return { fields, end: text.length, eol };
}

/** A field's value, unfolded, decoded as UTF-8. */
function fieldValue(field: HeaderField): string {
  const colon = field.raw.indexOf(':');
  return Buffer.from(field.raw.slice(colon + 1), 'latin1')
    .toString('utf8')
    .replace(/\r?\n(?=[ \t])/g, '');
}

/**
 * The comparison form of an address: lowercased (Exchange matches recipients without regard to case)
 * with the domain in its ASCII form, so `user@bücher.example` in a header matches
 * `user@xn--bcher-kva.example` in RCPT TO.
 */
export function addressKey(address: string): string {
  const at = address.lastIndexOf('@');
  if (at === -1) return address.toLowerCase();
  const domain = address.slice(at + 1);
  const ascii = domainToASCII(domain) || domain;
  return `${address.slice(0, at)}@${ascii}`.toLowerCase();
}

/** The mailboxes named by the To, Cc and Bcc headers, in that order of kinds. */
export function headerMailboxes(data: Buffer): HeaderMailbox[] {
  const { fields } = readHeaderBlock(data);
  const out: HeaderMailbox[] = [];
  for (const kind of ['to', 'cc', 'bcc'] as const) {
    const values = fields.filter((f) => f.name === kind).map(fieldValue);
    if (values.length === 0) continue;
    const parsed = parseAddressHeader(values, { flatten: true, decodePunycode: false });
    for (const entry of parsed.value) {
      if (entry.address !== undefined && entry.address !== '') {
        out.push({ kind, name: entry.name, address: entry.address });
      }
    }
  }
  return out;
}

/** Puts the envelope-only recipients into the header block; everything else stays byte for byte. */
function withBcc(data: Buffer, block: HeaderBlock, added: string[]): Buffer {
  if (added.length === 0) return data;
  const { eol } = block;
  // One address per line, so no line nears the 998-octet limit however many there are.
  const list = added.join(`,${eol} `);
  const existing = block.fields.find((f) => f.name === 'bcc');
  let insertAt: number;
  let text: string;
  if (existing !== undefined) {
    // RFC 5322 allows one Bcc field: extend it rather than add a second.
    insertAt = existing.start + existing.raw.length; // before the field's final line break
    text = (fieldValue(existing).trim() === '' ? ' ' : `,${eol} `) + list;
  } else {
    insertAt = block.end;
    const brokenLastLine = insertAt > 0 && data[insertAt - 1] !== 0x0a;
    text = `${brokenLastLine ? eol : ''}Bcc: ${list}${eol}`;
  }
  return Buffer.concat([data.subarray(0, insertAt), Buffer.from(text, 'utf8'), data.subarray(insertAt)]);
}

/** Compares the envelope with the headers and builds the message MIME sendMail would need. */
export function planRecipients(data: Buffer, envelope: readonly string[]): RecipientPlan {
  const block = readHeaderBlock(data);
  const named = headerMailboxes(data);
  const byKey = new Map<string, HeaderMailbox>();
  for (const mailbox of named) {
    const key = addressKey(mailbox.address);
    if (!byKey.has(key)) byKey.set(key, mailbox);
  }
  const envelopeKeys = new Set<string>();
  const plan: RecipientPlan['envelope'] = [];
  const added: string[] = [];
  for (const address of envelope) {
    const key = addressKey(address);
    if (envelopeKeys.has(key)) continue;
    envelopeKeys.add(key);
    const header = byKey.get(key);
    plan.push({ address, kind: header?.kind, name: header?.name ?? '' });
    if (header === undefined) added.push(address);
  }
  const headerOnly = [...byKey.entries()].filter(([key]) => !envelopeKeys.has(key)).map(([, m]) => m.address);
  return { mime: withBcc(data, block, added), added, headerOnly, envelope: plan };
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SafeHtml } from './html.js';
import { messagePage, type MessagePage } from './pages/messages.js';
import { securityHeaders } from './security.js';

export function sendHtml(
  res: ServerResponse,
  status: number,
  page: SafeHtml,
  options: { formActionOrigins?: readonly string[]; headers?: Record<string, string> } = {},
): void {
  const body = page.toString();
  res.writeHead(status, {
    ...securityHeaders(options.formActionOrigins),
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    ...options.headers,
  });
  res.end(body);
}

export function sendMessage(res: ServerResponse, page: MessagePage, headers?: Record<string, string>): void {
  sendHtml(res, page.status, messagePage(page), headers ? { headers } : {});
}

/** 303 See Other after a POST, so a reload never re-submits the form. */
export function redirect(
  res: ServerResponse,
  location: string,
  options: { status?: number; formActionOrigins?: readonly string[] } = {},
): void {
  res.writeHead(options.status ?? 303, {
    ...securityHeaders(options.formActionOrigins),
    Location: location,
    'Content-Length': '0',
  });
  res.end();
}

const MAX_FORM_BYTES = 16 * 1024;

export class BodyTooLarge extends Error {}

/** Reads an application/x-www-form-urlencoded body (the only kind our forms send), bounded in size. */
export async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) throw new BodyTooLarge('form too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

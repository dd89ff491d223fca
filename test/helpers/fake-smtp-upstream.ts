/**
 * A fake Gmail submission server for tests: smtp-server 3.21.6 speaking XOAUTH2 as a server, with real
 * TLS (the test CA's certificate), on 127.0.0.1 port 0.
 *
 * Faithful where the proxy depends on it:
 * - implicit TLS (smtp.gmail.com:465) or STARTTLS (:587), and AUTH refused before TLS (538);
 * - only `AUTH XOAUTH2`; the token is checked with the fake authorization server and must belong to
 *   the SASL user; a bad token gets Gmail's error challenge `334 <base64 {"status":"401",...}>`, then
 *   `535` after the client's empty line;
 * - chosen recipients are refused with `550 5.1.1`, and Exchange Online's
 *   `535 5.7.139 ... SmtpClientAuthentication is disabled for the Tenant` can be switched on;
 * - every accepted message is stored with its envelope and raw bytes.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerSession } from 'smtp-server';
import type { UpstreamServer } from '../../src/config/types.js';
import { getTestCerts } from './certs.js';

export interface FakeSmtpUpstreamOptions {
  /** 'implicit' like port 465, 'starttls' like 587. */
  tls: 'implicit' | 'starttls';
  /** Who an access token belongs to (the fake auth server's `checkAccessToken`). */
  checkAccessToken(token: string): string | undefined;
  /** SIZE advertised; Gmail's by default. */
  size?: number;
}

export interface StoredMessage {
  /** The SASL user the message was sent as. */
  user: string;
  /** The client's EHLO name as the upstream saw it. */
  heloName: string;
  from: string;
  to: string[];
  raw: Buffer;
}

export interface AuthAttempt {
  username: string;
  ok: boolean;
  heloName: string;
}

export interface FakeSmtpUpstream {
  readonly port: number;
  /** As a connection's `smtp` setting (host 127.0.0.1; trust `getTestCerts().caPem`). */
  readonly server: UpstreamServer;
  readonly messages: StoredMessage[];
  readonly authAttempts: AuthAttempt[];
  /** Recipients (lower-case) answered with `550 5.1.1`. */
  readonly rejectRecipients: Set<string>;
  /** Answer every AUTH with Exchange Online's tenant-policy refusal. */
  tenantAuthDisabled: boolean;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Connections open right now. */
  readonly openConnections: number;
  /** Drops every client connection (the upstream "dies" mid-session). */
  dropConnections(): void;
  close(): Promise<void>;
}

export const GMAIL_SIZE = 35_882_577;
export const TENANT_DISABLED_TEXT =
  '5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.';

function smtpError(code: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode: code });
}

export async function startFakeSmtpUpstream(options: FakeSmtpUpstreamOptions): Promise<FakeSmtpUpstream> {
  const certs = getTestCerts();
  const messages: StoredMessage[] = [];
  const authAttempts: AuthAttempt[] = [];
  const rejectRecipients = new Set<string>();
  let connections = 0;
  const state = { tenantAuthDisabled: false };
  const users = new WeakMap<SMTPServerSession, string>();

  const server = new SMTPServer({
    secure: options.tls === 'implicit',
    key: certs.keyPem,
    cert: certs.certPem,
    name: 'smtp.fake-gmail.test',
    banner: 'ESMTP fake-gmail ready',
    authMethods: ['XOAUTH2'],
    size: options.size ?? GMAIL_SIZE,
    logger: false,
    disableReverseLookup: true,
    onConnect(_session, callback) {
      connections += 1;
      callback();
    },
    onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, callback) {
      const heloName = session.hostNameAppearsAs;
      if (state.tenantAuthDisabled) {
        authAttempts.push({ username: auth.username ?? '', ok: false, heloName });
        callback(smtpError(535, TENANT_DISABLED_TEXT));
        return;
      }
      const owner = auth.accessToken ? options.checkAccessToken(auth.accessToken) : undefined;
      const ok = owner !== undefined && owner.toLowerCase() === (auth.username ?? '').toLowerCase();
      authAttempts.push({ username: auth.username ?? '', ok, heloName });
      if (!ok) {
        // Gmail's error challenge (developers.google.com/gmail/imap/xoauth2-protocol).
        callback(null, { data: { status: '401', schemes: 'bearer', scope: 'https://mail.google.com/' } });
        return;
      }
      users.set(session, auth.username ?? '');
      callback(null, { user: auth.username });
    },
    onRcptTo(address, _session, callback) {
      if (rejectRecipients.has(address.address.toLowerCase())) {
        callback(
          smtpError(
            550,
            "5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address.",
          ),
        );
        return;
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if ((stream as unknown as { sizeExceeded?: boolean }).sizeExceeded) {
          callback(smtpError(552, '5.3.4 Message size exceeds fixed maximum message size'));
          return;
        }
        messages.push({
          user: users.get(session) ?? '',
          heloName: session.hostNameAppearsAs,
          from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
        });
        callback(null, `2.0.0 OK ${messages.length} - gsmtp`);
      });
    },
  });
  server.on('error', () => undefined);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.server.address() as AddressInfo).port;

  return {
    port,
    server: { host: '127.0.0.1', port, tls: options.tls },
    messages,
    authAttempts,
    rejectRecipients,
    get tenantAuthDisabled() {
      return state.tenantAuthDisabled;
    },
    set tenantAuthDisabled(on: boolean) {
      state.tenantAuthDisabled = on;
    },
    get connections() {
      return connections;
    },
    get openConnections() {
      return server.connections.size;
    },
    dropConnections() {
      for (const conn of server.connections)
        (conn as unknown as { _socket: { destroy(): void } })._socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        // smtp-server's close waits for clients to leave; relayed sessions in a failing test must not hang it.
        for (const conn of server.connections) (conn as unknown as { close(): void }).close();
        server.close(() => resolve());
      }),
  };
}

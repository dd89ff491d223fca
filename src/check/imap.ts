/**
 * IMAP check: a real client (imapflow) logs in to the account's IMAP server with the access token,
 * then reads the capabilities and INBOX's message count, then logs out. Nothing is changed on the
 * server: INBOX is only looked at (STATUS, or a read-only EXAMINE for a server that refuses STATUS).
 *
 * imapflow picks the mechanism itself from the server's capabilities: OAUTHBEARER when offered,
 * else XOAUTH2. The proxy uses the connection's `sasl:` instead; Gmail takes both
 * and Exchange offers only XOAUTH2, so for the built-in providers the two agree on what matters.
 */
import { ImapFlow } from 'imapflow';
import type { UpstreamServer } from '../config/types.js';
import { ProxyError } from '../errors.js';
import { upstreamTlsOptionsForLibrary } from '../proxy/shared/index.js';
import { loginWithTokenRetry, withDeadline, type LoginAttempt } from './token-retry.js';
import type { CheckEnv, CheckSuccess, ImapFacts } from './types.js';

interface ImapError extends Error {
  authenticationFailed?: boolean;
  response?: unknown;
  responseText?: string;
}

function clientFor(env: CheckEnv, server: UpstreamServer, accessToken: string): ImapFlow {
  // Verified TLS, the connection's own CA added to (never instead of) the system CAs. imapflow sets
  // SNI and the host it checks the certificate against itself.
  const tls = upstreamTlsOptionsForLibrary(server.host, env.account.connection.ca);
  return new ImapFlow({
    host: server.host,
    port: server.port,
    secure: server.tls === 'implicit',
    doSTARTTLS: server.tls === 'starttls',
    tls,
    auth: { user: env.account.email, accessToken },
    logger: false,
    // One login, two questions, logout: no IDLE, no COMPRESS, no ENABLE side effects.
    disableAutoIdle: true,
    disableCompression: true,
    disableAutoEnable: true,
    connectionTimeout: env.timeoutMs,
    greetingTimeout: env.timeoutMs,
    socketTimeout: env.timeoutMs,
  });
}

/** The OAuth mechanism imapflow used (not in its typings, so read defensively). */
function usedMechanism(client: ImapFlow): string | undefined {
  const caps = (client as unknown as { authCapabilities?: Map<string, boolean> }).authCapabilities;
  if (!(caps instanceof Map)) return undefined;
  for (const [name, used] of caps) if (used) return name.replace(/^AUTH=/, '');
  return undefined;
}

async function probe(client: ImapFlow): Promise<ImapFacts> {
  // Valued capabilities (APPENDLIMIT=35651584) come back as numbers; show them as the server sent them.
  const capabilities = [...client.capabilities].map(([name, value]) =>
    typeof value === 'number' ? `${name}=${value}` : name,
  );
  const status = await client.status('INBOX', { messages: true });
  if (status && typeof status.messages === 'number') {
    return { capabilities, inboxMessages: status.messages, inboxVia: 'STATUS' };
  }
  const mailbox = await client.mailboxOpen('INBOX', { readOnly: true });
  return { capabilities, inboxMessages: mailbox.exists, inboxVia: 'EXAMINE' };
}

async function attempt(
  env: CheckEnv,
  server: UpstreamServer,
  accessToken: string,
): Promise<LoginAttempt<{ facts: ImapFacts; mechanism: string | undefined }>> {
  const client = clientFor(env, server, accessToken);
  // imapflow emits 'error' for socket trouble; without a listener that would end the process.
  client.on('error', () => undefined);
  const label = `IMAP ${server.host}:${server.port}`;
  try {
    try {
      await withDeadline(env.timeoutMs * 2, `${label} login`, client.connect(), () => client.close());
    } catch (err) {
      const e = err as ImapError;
      if (e.authenticationFailed) {
        return { ok: false, reason: typeof e.response === 'string' && e.response ? e.response : e.message };
      }
      throw err;
    }
    const mechanism = usedMechanism(client);
    const facts = await withDeadline(env.timeoutMs, `${label} INBOX status`, probe(client), () =>
      client.close(),
    );
    await withDeadline(env.timeoutMs, `${label} logout`, client.logout(), () => client.close()).catch(
      () => undefined,
    );
    return { ok: true, value: { facts, mechanism } };
  } finally {
    client.close();
  }
}

export async function checkImap(env: CheckEnv): Promise<CheckSuccess<ImapFacts>> {
  const server = env.account.connection.imap;
  if (!server) throw new ProxyError('config', `connection ${env.account.connection.name} has no IMAP server`);
  const { value, refreshed } = await loginWithTokenRetry(env, 'the IMAP server', (token) =>
    attempt(env, server, token),
  );
  return { mechanism: value.mechanism, refreshed, facts: value.facts };
}

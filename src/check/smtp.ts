/**
 * SMTP check: nodemailer's SMTPConnection connects (implicit TLS or required STARTTLS, certificate
 * verified), logs in with AUTH XOAUTH2, and quits. No mail is sent.
 *
 * Tokens come through nodemailer's XOAuth2 `provisionCallback`: `renew=true`, which
 * nodemailer asks for after Gmail's `334` error challenge, becomes a forced refresh in the
 * TokenManager. Exchange answers a bad token with a plain `535 5.7.3` instead, which nodemailer does
 * not retry; for that (the proxy's `isTokenRejection` set) we force the refresh ourselves and log in
 * once more on a new connection. `535 5.7.139` (SMTP AUTH disabled) is not the token's fault and is
 * never retried. nodemailer has no OAUTHBEARER, so this check always uses XOAUTH2.
 */
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import XOAuth2 from 'nodemailer/lib/xoauth2';
import type { UpstreamServer } from '../config/types.js';
import { ProxyError } from '../errors.js';
import { upstreamTlsOptionsForLibrary } from '../proxy/shared/index.js';
import { smtpAuthDisabled } from '../proxy/smtp/send-route.js';
import { withDeadline } from './token-retry.js';
import type { CheckEnv, CheckSuccess, SmtpFacts } from './types.js';

interface SmtpError extends Error {
  responseCode?: number;
  response?: string;
}

/** Replies that say "this token is no good" (the proxy's rule in proxy/smtp/upstream.ts). */
function isTokenRejection(err: SmtpError): boolean {
  if (err.responseCode !== 535 && err.responseCode !== 530 && err.responseCode !== 534) return false;
  const enhanced = /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b/.exec(err.response ?? '')?.[1];
  return enhanced === undefined || ['5.7.8', '5.7.3', '5.7.0'].includes(enhanced);
}

type Outcome =
  | { ok: true; response: string }
  | { ok: false; error: SmtpError }
  /** The TokenManager failed inside the provisionCallback: its own error, untouched by nodemailer. */
  | { ok: false; tokenError: unknown };

function openConnection(env: CheckEnv, server: UpstreamServer): SMTPConnection {
  const tls = upstreamTlsOptionsForLibrary(server.host, env.account.connection.ca);
  return new SMTPConnection({
    host: server.host,
    port: server.port,
    secure: server.tls === 'implicit',
    requireTLS: server.tls === 'starttls',
    tls,
    connectionTimeout: env.timeoutMs,
    greetingTimeout: env.timeoutMs,
    socketTimeout: env.timeoutMs,
    logger: false,
    debug: false,
  });
}

async function attempt(env: CheckEnv, server: UpstreamServer, onRenew: () => void): Promise<Outcome> {
  const conn = openConnection(env, server);
  // SMTPConnection reports socket and TLS errors only as an 'error' event (the connect and login
  // callbacks are then never called), so every step races this.
  const failed = new Promise<never>((_resolve, reject) => conn.once('error', reject));
  failed.catch(() => undefined);
  conn.on('error', () => undefined);
  let tokenError: unknown;
  const oauth2 = new XOAuth2({
    user: env.account.email,
    provisionCallback: (_user, renew, callback) => {
      if (renew) onRenew();
      env.tokens.getAccessToken(env.account, { forceRefresh: renew }).then(
        (t) => callback(null, t.token, t.expiresAt),
        (err: unknown) => {
          // nodemailer rewrites the `code` of the error it is given; keep ours aside.
          tokenError = err;
          callback(new Error('no access token'));
        },
      );
    },
  });
  const label = `SMTP ${server.host}:${server.port}`;
  try {
    await withDeadline(
      env.timeoutMs * 2,
      `${label} connect`,
      Promise.race([
        failed,
        new Promise<void>((resolve, reject) => conn.connect((err) => (err ? reject(err) : resolve()))),
      ]),
      () => conn.close(),
    );
    const login = await withDeadline(
      env.timeoutMs * 2,
      `${label} AUTH`,
      Promise.race([
        failed,
        new Promise<Outcome>((resolve) =>
          conn.login({ user: env.account.email, oauth2 }, (err) => {
            if (tokenError !== undefined) resolve({ ok: false, tokenError });
            else if (err) resolve({ ok: false, error: err as SmtpError });
            else resolve({ ok: true, response: conn.lastServerResponse || '235' });
          }),
        ),
      ]),
      () => conn.close(),
    );
    if (login.ok) await quit(conn, env.timeoutMs);
    return login;
  } finally {
    conn.close();
  }
}

/** QUIT and wait (briefly) for the server to close, as a polite client does. */
async function quit(conn: SMTPConnection, timeoutMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, Math.min(timeoutMs, 5_000));
    conn.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
    conn.quit();
  });
}

/**
 * An account that sends through Graph: the check is that a Graph token can be had (a grant consented
 * without the Graph scope fails here with "consent again"). Sending a test message would put it in the
 * mailbox's Sent Items, so none is sent.
 */
async function checkGraph(
  env: CheckEnv,
  why: NonNullable<SmtpFacts['graph']>['why'],
): Promise<CheckSuccess<SmtpFacts>> {
  const graph = env.account.connection.graph;
  if (!graph)
    throw new ProxyError('config', `connection ${env.account.connection.name} does not send through Graph`);
  await env.tokens.getAccessToken(env.account, { resource: 'graph' });
  return {
    mechanism: 'Graph',
    refreshed: false,
    facts: { authResponse: 'Graph token obtained', graph: { url: graph.url, scopes: graph.scopes, why } },
  };
}

export async function checkSmtp(env: CheckEnv): Promise<CheckSuccess<SmtpFacts>> {
  if (env.account.connection.send === 'graph') return checkGraph(env, 'send: graph');
  const server = env.account.connection.smtp;
  if (!server) throw new ProxyError('config', `connection ${env.account.connection.name} has no SMTP server`);
  // The token before the connection: an account that cannot get one costs the mail server nothing.
  await env.tokens.getAccessToken(env.account);
  let renewed = false;
  const onRenew = (): void => {
    renewed = true;
  };
  let outcome = await attempt(env, server, onRenew);
  if (!outcome.ok && 'error' in outcome && !renewed && isTokenRejection(outcome.error)) {
    // Refused without a challenge (Exchange): refresh, and the next connection's first token is fresh.
    await env.tokens.getAccessToken(env.account, { forceRefresh: true });
    renewed = true;
    outcome = await attempt(env, server, onRenew);
  }
  if (outcome.ok) {
    return { mechanism: 'XOAUTH2', refreshed: renewed, facts: { authResponse: outcome.response } };
  }
  if ('tokenError' in outcome) throw outcome.tokenError;
  const err = outcome.error;
  if (env.account.connection.send === 'auto' && smtpAuthDisabled(err.response ?? '')) {
    // What the proxy does for this mailbox too: Graph instead of the refused SMTP login.
    return checkGraph(env, 'SMTP AUTH is off (send: auto)');
  }
  if (err.responseCode !== undefined && err.responseCode >= 500 && err.response) {
    // A final refusal of the login (after the fresh token, or one no token would cure).
    throw new ProxyError('upstream-rejected', `the SMTP server refused the login: ${err.response}`, {
      cause: err,
      detail: err.response,
    });
  }
  throw err;
}

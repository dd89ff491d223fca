/**
 * `xoauth-proxy consent <account>`: get a grant for one account from the terminal and store it. The
 * daemon needs no restart: it re-reads the store before every refresh.
 */
import { grantHasNoConsent } from '../../config/accounts.js';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { ResolvedAccount, Settings } from '../../config/types.js';
import { ProxyError } from '../../errors.js';
import { storeGrant } from '../grant-record.js';
import { createAuthorizationRequest, exchangeAuthorizationCode } from '../grants/authorization-code.js';
import {
  pollDeviceAuthorization,
  startDeviceAuthorization,
  type DeviceFlowOptions,
} from '../grants/device-code.js';
import { checkIdentity, identityFromTokenSet } from '../grants/identity.js';
import { classifyTokenError, TokenEndpointError } from '../grants/token-errors.js';
import type { TokenRecord, TokenSet, Store } from '../types.js';
import { startLoopbackReceiver, watchPastedRedirect, type RedirectOutcome } from './redirect.js';

/** How long the CLI waits for the browser (or a paste) before giving up. */
export const CONSENT_WAIT_MS = 15 * 60_000;

export interface CliConsentOptions {
  account: ResolvedAccount;
  store: Store;
  settings: Pick<Settings, 'tokenRequestTimeoutMs'>;
  out: (text: string) => void;
  stdin: NodeJS.ReadableStream;
  /** Device flow instead of the browser redirect. */
  device?: boolean;
  /** Try to open a browser on this machine (default true). */
  browser?: boolean;
  /** Fixed loopback port (e.g. for an SSH tunnel); default: any free port. */
  port?: number;
  env?: NodeJS.ProcessEnv;
  /** Tests: the device-flow clock and sleep. */
  deviceFlow?: Pick<DeviceFlowOptions, 'now' | 'sleep'>;
  waitMs?: number;
}

export type CliConsentResult =
  | { kind: 'stored'; record: TokenRecord }
  /** App-only connections need no consent from a user. */
  | { kind: 'not-needed' };

export async function runCliConsent(options: CliConsentOptions): Promise<CliConsentResult> {
  const { account, out } = options;
  const connection = account.connection;
  if (grantHasNoConsent(connection)) {
    out(
      connection.grant === 'service_account'
        ? `${account.id} uses connection ${connection.name} with a Google service account (domain-wide ` +
            `delegation): no user consent is needed. A Workspace admin grants the client id the scope in the ` +
            `Admin console instead (see docs/oauth.md).\n`
        : `${account.id} uses connection ${connection.name} with app-only access (client credentials): no user ` +
            `consent is needed. An administrator grants the app access to the mailboxes instead (see docs/oauth.md).\n`,
    );
    return { kind: 'not-needed' };
  }
  const timeoutMs = options.settings.tokenRequestTimeoutMs;
  let tokenSet: TokenSet;
  try {
    tokenSet =
      options.device || connection.grant === 'device_code'
        ? await deviceConsent(options, timeoutMs)
        : await browserConsent(options, timeoutMs);
  } catch (err) {
    throw asConsentError(err);
  }
  const identity = await identityFromTokenSet(connection, tokenSet, { timeoutMs });
  // Throws IdentityMismatchError naming both addresses; nothing is stored then.
  checkIdentity(account, identity);
  const record = await storeGrant(options.store, account, tokenSet, identity);
  out(
    `Consent stored for ${account.id} (signed in as ${identity.email}` +
      `${identity.name ? `, ${identity.name}` : ''}). The proxy uses it from the next login on; no restart needed.\n`,
  );
  return { kind: 'stored', record };
}

async function browserConsent(options: CliConsentOptions, timeoutMs: number): Promise<TokenSet> {
  const { account, out } = options;
  const connection = account.connection;
  // The state comes first so the listener can check it; the redirect URI needs the listener's port.
  const state = randomBytes(24).toString('base64url');
  const receiver = await startLoopbackReceiver({
    provider: connection.provider,
    state,
    ...(options.port === undefined ? {} : { port: options.port }),
  });
  const request = createAuthorizationRequest(connection, {
    redirectUri: receiver.redirectUri,
    loginHint: account.email,
    state,
  });
  const pasted = watchPastedRedirect(options.stdin, request.state, (message) => out(`${message}\n`));
  let timer: NodeJS.Timeout | undefined;
  try {
    out(
      `Sign in as ${account.email} and allow access. Open this URL in a browser:\n\n  ${request.url}\n\n` +
        `Waiting for the redirect to ${receiver.redirectUri} ... If the browser runs on another machine, ` +
        `the final page will fail to load: copy its full address (it starts with ${receiver.redirectUri}) ` +
        `and paste it here, then press Enter.\n`,
    );
    if (options.browser !== false) openBrowser(request.url, options.env ?? process.env);
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new ProxyError('needs-consent', 'No answer from the browser in time; run consent again.')),
        options.waitMs ?? CONSENT_WAIT_MS,
      );
    });
    const outcome: RedirectOutcome = await Promise.race([receiver.result, pasted.result, timeout]);
    if ('error' in outcome) {
      throw new ProxyError(
        'needs-consent',
        `The provider did not grant access: ${outcome.error}${outcome.description ? ` (${outcome.description})` : ''}. ` +
          'Nothing was stored.',
      );
    }
    return await exchangeAuthorizationCode(
      connection,
      { code: outcome.code, redirectUri: receiver.redirectUri, codeVerifier: request.codeVerifier },
      { timeoutMs },
    );
  } finally {
    clearTimeout(timer);
    pasted.close();
    await receiver.close();
  }
}

async function deviceConsent(options: CliConsentOptions, timeoutMs: number): Promise<TokenSet> {
  const { account, out } = options;
  const flow: DeviceFlowOptions = { timeoutMs, ...options.deviceFlow };
  const auth = await startDeviceAuthorization(account.connection, flow);
  out(
    `Sign in as ${account.email}: open ${auth.verificationUri} on any device and enter the code ${auth.userCode}\n` +
      (auth.message ? `(${auth.message})\n` : '') +
      `Waiting for the sign-in (the code expires in ${Math.round((auth.expiresAt - (flow.now ?? Date.now)()) / 60_000)} min) ...\n`,
  );
  return pollDeviceAuthorization(account.connection, auth, {
    ...flow,
    onPoll: (answer, delay) => {
      if (answer === 'slow_down') out(`(the provider asked to poll more slowly: every ${delay / 1000} s)\n`);
    },
  });
}

/** Turns a token-endpoint failure during consent into a ProxyError with a useful message. */
function asConsentError(err: unknown): unknown {
  if (err instanceof ProxyError) return err;
  if (err instanceof TokenEndpointError || (err as { isBoom?: boolean })?.isBoom) {
    const e = classifyTokenError(err);
    return new ProxyError(
      e.kind === 'transient' ? 'token-unavailable' : 'needs-consent',
      `The token endpoint refused the consent: ${e.summary}. Nothing was stored.`,
      { cause: e, detail: e.summary },
    );
  }
  return err;
}

/** Best effort; the URL is printed anyway. */
function openBrowser(url: string, env: NodeJS.ProcessEnv): void {
  let command: string;
  let args: string[];
  if (process.platform === 'darwin') [command, args] = ['open', [url]];
  else if (process.platform === 'win32') [command, args] = ['cmd', ['/c', 'start', '""', url]];
  else if (env.DISPLAY || env.WAYLAND_DISPLAY) [command, args] = ['xdg-open', [url]];
  else return;
  try {
    const child = spawn(command, args, { detached: true, stdio: 'ignore' });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // No opener installed: the printed URL is enough.
  }
}

/**
 * Test environment for the SMTP front in Graph mode without Graph: the shared proxy environment with
 * the real local authenticator and token manager, and an SMTP Protocol whose login ends in a local
 * upstream, a recording stub sender. Real clients then run the proxy's own mail transaction.
 */
import type { Settings, TlsMode } from '../../../src/config/types.js';
import type { MessageSender, OutgoingMessage, SendOutcome } from '../../../src/graph/types.js';
import type { UpstreamLogin } from '../../../src/proxy/shared/login.js';
import { createProtocolServer, type LocalUpstream } from '../../../src/proxy/shared/session.js';
import { smtpProtocol } from '../../../src/proxy/smtp/server.js';
import { fakeConnection } from '../../helpers/fake-auth-server.js';
import { startProxyEnv, type ProxyEnv } from '../../helpers/proxy-env.js';
import { CONSENT_HINT, EMAIL, PASSWORD, USER } from './env.js';
import { MessageBudget } from '../../../src/proxy/shared/message-budget.js';

export { CONSENT_HINT, EMAIL, PASSWORD, USER };
export { eventually, sessionLines } from '../../helpers/proxy-env.js';

export const SENDER_LABEL = 'graph stub';

/** Records every message; answers with `outcome`; with `hold`, waits until released or aborted. */
export class RecordingSender implements MessageSender {
  readonly messages: OutgoingMessage[] = [];
  readonly signals: AbortSignal[] = [];
  /** The access tokens the logins were given (the login's authenticate step). */
  readonly tokens: string[] = [];
  outcome: SendOutcome = { kind: 'sent' };
  hold = false;
  #release: (() => void) | undefined;
  #started: (() => void) | undefined;

  async send(message: OutgoingMessage, signal: AbortSignal): Promise<SendOutcome> {
    this.messages.push({ ...message, recipients: [...message.recipients], data: Buffer.from(message.data) });
    this.signals.push(signal);
    this.#started?.();
    if (this.hold) {
      await new Promise<void>((resolve) => {
        this.#release = resolve;
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    }
    if (signal.aborted) return { kind: 'temporary', reason: 'aborted' };
    return this.outcome;
  }

  /** Resolves once a send has started (bounded by the caller's test timeout). */
  started(): Promise<void> {
    if (this.messages.length > 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#started = resolve;
    });
  }

  release(): void {
    this.#release?.();
  }
}

export interface LocalEnvOptions {
  listenerTls?: TlsMode;
  settings?: Partial<Settings['limits']>;
  /** The process's message memory for Graph-mode sessions, as the daemon gives it (default: none). */
  messageMemory?: number;
}

export type LocalEnv = ProxyEnv<{ close(): Promise<void> }> & { sender: RecordingSender };

/** The login as an integrator would plug it in: the account is checked, then a local upstream. */
function stubLogin(sender: RecordingSender): UpstreamLogin<LocalUpstream> {
  return {
    connect: () => Promise.resolve({ sender, label: SENDER_LABEL }),
    authenticate: (_upstream, _account, token) => {
      sender.tokens.push(token);
      return Promise.resolve({ ok: true });
    },
    close: () => undefined,
  };
}

export async function startLocalEnv(options: LocalEnvOptions = {}): Promise<LocalEnv> {
  const sender = new RecordingSender();
  const env = await startProxyEnv({
    name: 'xoauth-smtp-local',
    username: USER,
    password: PASSWORD,
    email: EMAIL,
    consentHint: CONSENT_HINT,
    // No upstream mail server at all: a relay attempt would fail the test.
    startUpstream: () => Promise.resolve({ close: () => Promise.resolve() }),
    connection: (auth, _upstream, certs) => fakeConnection(auth, { ca: certs.caPem }),
    limits: options.settings,
    noLimiterDelay: true,
    listenerTls: options.listenerTls ?? 'none',
    createServer: (listener, deps) =>
      createProtocolServer(
        smtpProtocol('proxy.test', { upstreamLogin: () => stubLogin(sender) }),
        listener,
        options.messageMemory === undefined
          ? deps
          : { ...deps, messageBudget: new MessageBudget(options.messageMemory) },
      ),
  });
  return Object.assign(env, { sender });
}

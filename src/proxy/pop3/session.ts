/**
 * One POP3 client connection. The shared FrontSession owns the socket, the timer, the login and the
 * log line; this file runs the POP3 front's actions and maps the session's events onto POP3 machine
 * events (the machine picks the `+OK` / `-ERR [...]` texts, including the one for a shutdown).
 */
import type { Socket } from 'node:net';
import { FrontSession, type SessionEvent } from '../shared/front-session.js';
import { Secret } from '../shared/secret.js';
import type { ConnectionContext, ProxyDeps, SessionOutcome } from '../shared/types.js';
import { Pop3Front } from './front.js';
import type { Pop3Limits } from './limits.js';
import type { CloseReason, Pop3Action } from './machine.js';
import { pop3UpstreamLogin, type Pop3Upstream } from './upstream.js';

const OUTCOME: Record<CloseReason, SessionOutcome> = {
  quit: 'client-quit',
  'client-closed': 'client-closed',
  'idle-timeout': 'timeout',
  'line-too-long': 'limit',
  'too-many-commands': 'limit',
  'too-many-failures': 'limit',
  http: 'protocol-error',
  shutdown: 'shutdown',
};

export class Pop3Session extends FrontSession<Pop3Upstream, Pop3Action> {
  readonly #limits: Pop3Limits;
  protected readonly front: Pop3Front;

  constructor(socket: Socket, context: ConnectionContext, deps: ProxyDeps, limits: Pop3Limits) {
    super(socket, context, deps, {
      protocol: 'pop3',
      tlsCommand: 'STLS',
      preAuthIdleTimeoutMs: limits.preAuthIdleTimeoutMs,
      closeGraceMs: 5_000,
      // A POP3 client waits for the answer to PASS, so this is never reached by an honest one.
      maxBufferDuringLogin: 64 * 1024,
      failedLoginIsOutcome: true,
    });
    this.#limits = limits;
    this.front = new Pop3Front(
      {
        tls: context.listener.tls,
        maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
        maxFailedLogins: limits.maxFailedLogins,
      },
      limits.maxLineLength,
    );
    this.begin();
  }

  protected resolve(event: SessionEvent<Pop3Upstream>): void {
    if (event.type === 'auth-succeeded') {
      const text = event.upstream.loginText;
      this.run(
        this.front.resolve(
          text === undefined ? { type: 'auth-succeeded' } : { type: 'auth-succeeded', text },
        ),
      );
      return;
    }
    this.run(this.front.resolve(event));
  }

  protected run(actions: Pop3Action[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'send':
          this.write(`${action.reply}\r\n`);
          break;
        case 'start-tls':
          this.startTls();
          break;
        case 'authenticate':
          this.authenticate(
            action.username,
            new Secret(action.password),
            pop3UpstreamLogin(this.#limits.upstreamTimeoutMs),
          );
          break;
        case 'start-relay':
          this.startRelay();
          break;
        case 'close':
          this.endWith(OUTCOME[action.reason]);
          break;
      }
    }
  }
}

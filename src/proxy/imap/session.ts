/**
 * One client connection of the IMAP front. The shared FrontSession owns the socket, the timer, the
 * login and the log line; this file runs the IMAP front's actions and maps the session's events onto
 * IMAP machine events (tagged OK/NO carry the tag the machine remembered).
 */
import type { Socket } from 'node:net';
import { FrontSession, type SessionEvent } from '../shared/front-session.js';
import type { ConnectionContext, ProxyDeps } from '../shared/types.js';
import { ImapFront, type AsyncEvent } from './front.js';
import type { ImapLimits } from './limits.js';
import type { Action } from './machine.js';
import { imapUpstreamLogin, type ImapUpstream } from './upstream-auth.js';

export class ImapSession extends FrontSession<ImapUpstream, Action> {
  readonly #limits: ImapLimits;
  protected readonly front: ImapFront;

  constructor(socket: Socket, context: ConnectionContext, deps: ProxyDeps, limits: ImapLimits) {
    super(socket, context, deps, {
      protocol: 'imap',
      tlsCommand: 'STARTTLS',
      preAuthIdleTimeoutMs: limits.preAuthIdleTimeoutMs,
      closeGraceMs: 2_000,
      // Bytes the client pipelines during a login stay in the socket until we know the outcome.
      maxBufferDuringLogin: 0,
      // A failed LOGIN followed by LOGOUT logs `client-quit` (with the failure as the reason).
      failedLoginIsOutcome: false,
    });
    this.#limits = limits;
    const config = {
      tls: context.listener.tls,
      maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
      maxFailedLogins: limits.maxFailedLogins,
    };
    this.front = new ImapFront(config, limits, context.secure);
    this.begin();
  }

  protected resolve(event: SessionEvent<ImapUpstream>): void {
    const imapEvent = toImapEvent(event);
    if (imapEvent) this.run(this.front.resolve(imapEvent));
  }

  protected run(actions: Action[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'send':
          this.write(action.text);
          break;
        case 'start-tls':
          this.startTls();
          break;
        case 'login':
          this.authenticate(
            action.username,
            action.password,
            imapUpstreamLogin(this.#limits.upstreamTimeoutMs),
          );
          break;
        case 'start-relay':
          this.startRelay();
          break;
        case 'close':
          this.endWith(action.outcome, action.reason);
          break;
      }
    }
  }
}

function toImapEvent(event: SessionEvent<ImapUpstream>): AsyncEvent | undefined {
  switch (event.type) {
    case 'tls-ready':
      return { type: 'tls-started' };
    case 'auth-succeeded': {
      const { postLoginCapabilities, loginText } = event.upstream;
      return {
        type: 'login-succeeded',
        ...(postLoginCapabilities ? { capabilities: postLoginCapabilities } : {}),
        ...(loginText ? { text: loginText } : {}),
      };
    }
    case 'auth-failed':
      return {
        type: 'login-failed',
        error: event.error,
        ...(event.consentHint ? { consentHint: event.consentHint } : {}),
      };
    case 'idle-timeout':
    case 'shutdown':
      return event;
    case 'client-closed':
      // The machine has nothing to say to a client that is gone; the session logs `client-closed`.
      return undefined;
  }
}

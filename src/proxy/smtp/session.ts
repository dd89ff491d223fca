/**
 * One SMTP client connection. The shared FrontSession owns the socket, the timer, the login and the
 * log line; this file runs the SMTP front's actions and maps the session's events onto SMTP machine
 * events. SMTP's own parts: the EHLO name goes to the upstream login, and a shutdown answers `421`.
 */
import type { Socket } from 'node:net';
import { FrontSession, type SessionEvent } from '../shared/front-session.js';
import { Secret } from '../shared/secret.js';
import type { ConnectionContext, ProxyDeps, SessionOutcome } from '../shared/types.js';
import { SmtpFront } from './front.js';
import type { CloseReason, SmtpAction } from './machine.js';
import { smtpUpstreamLogin, type SmtpUpstream } from './upstream.js';

const OUTCOME: Record<CloseReason, SessionOutcome> = {
  quit: 'client-quit',
  'client-closed': 'client-closed',
  'idle-timeout': 'timeout',
  'line-too-long': 'limit',
  'too-many-commands': 'limit',
  'too-many-failures': 'limit',
  http: 'protocol-error',
};

export interface SmtpSessionOptions {
  /** Our name in the greeting and EHLO reply. */
  serverName: string;
}

export class SmtpSession extends FrontSession<SmtpUpstream, SmtpAction> {
  protected readonly front: SmtpFront;

  constructor(socket: Socket, context: ConnectionContext, deps: ProxyDeps, options: SmtpSessionOptions) {
    const limits = deps.config.settings.limits;
    super(socket, context, deps, {
      protocol: 'smtp',
      tlsCommand: 'STARTTLS',
      preAuthIdleTimeoutMs: limits.preAuthIdleTimeoutMs,
      closeGraceMs: 5_000,
      // RFC 2920 clients stop at DATA and wait for 354, so this is never reached by an honest client.
      maxBufferDuringLogin: 64 * 1024,
      failedLoginIsOutcome: true,
    });
    this.front = new SmtpFront(
      {
        serverName: options.serverName,
        tls: context.listener.tls,
        maxMessageSize: limits.smtpMaxMessageSize,
        maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
        maxFailedLogins: limits.maxFailedLoginsPerConnection,
      },
      limits.maxLineLength,
    );
    this.begin();
  }

  protected resolve(event: SessionEvent<SmtpUpstream>): void {
    switch (event.type) {
      case 'shutdown':
        // The SMTP machine has no shutdown state; mid-handshake the socket carries TLS records and a
        // plain-text reply would only garble them.
        if (this.front.state.phase.name !== 'starting-tls') this.write('421 4.3.2 Service shutting down\r\n');
        this.endWith('shutdown');
        return;
      case 'auth-succeeded':
        this.run(this.front.resolve({ type: 'auth-succeeded' }));
        return;
      default:
        this.run(this.front.resolve(event));
    }
  }

  protected run(actions: SmtpAction[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'send':
          this.write(`${action.reply}\r\n`);
          break;
        case 'start-tls':
          this.startTls();
          break;
        case 'authenticate': {
          const timeoutMs = this.deps.config.settings.limits.upstreamConnectTimeoutMs;
          const upstream = smtpUpstreamLogin({ heloName: action.heloName, timeoutMs });
          this.authenticate(action.username, new Secret(action.password), upstream);
          break;
        }
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

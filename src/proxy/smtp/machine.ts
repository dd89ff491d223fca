/**
 * The SMTP front's state machine before authentication: `(state, event) -> (state, actions[])`, pure.
 *
 * Everything asynchronous (TLS handshake, local password check, token, upstream login) is an action
 * out and an event back in, so a unit test replays whole conversations without a socket. Once the
 * upstream accepted the token the machine hands the connection to the relay and stays out of the way.
 */
import type { TlsMode } from '../../config/types.js';
import { parseCommand } from './parser.js';
import { REPLY, ehloReply, greeting, heloReply, loginFailureReply } from './replies.js';
import { decodeLoginField, decodePlain, type SaslFailure } from './sasl.js';

export interface SmtpFrontConfig {
  /** Our name in the greeting and EHLO reply. */
  serverName: string;
  /** The listener's TLS mode: 'starttls' offers STARTTLS and refuses AUTH until it is done. */
  tls: TlsMode;
  /** SIZE advertised in EHLO (bytes). */
  maxMessageSize: number;
  /** Commands accepted before a successful login; the next one ends the connection. */
  maxCommandsBeforeLogin: number;
  /** Failed logins per connection; the connection ends after the last allowed one fails. */
  maxFailedLogins: number;
}

export type SmtpPhase =
  | { name: 'new' }
  | { name: 'command' }
  | { name: 'plain-response' }
  | { name: 'login-username' }
  | { name: 'login-password'; username: string }
  | { name: 'starting-tls' }
  | { name: 'authenticating'; username: string }
  | { name: 'relay' }
  | { name: 'closed' };

export interface SmtpState {
  phase: SmtpPhase;
  /** Whether the client connection is encrypted (implicit TLS, or after STARTTLS). */
  secure: boolean;
  /** The client's EHLO/HELO name; the upstream gets it in our EHLO. Forgotten after STARTTLS (RFC 3207 §4.2). */
  heloName: string | undefined;
  commands: number;
  failures: number;
}

export type SmtpEvent =
  | { type: 'connected' }
  | { type: 'line'; line: string }
  | { type: 'line-too-long' }
  | { type: 'tls-ready' }
  | { type: 'auth-succeeded' }
  | { type: 'auth-failed'; error: unknown; consentHint?: string }
  | { type: 'idle-timeout' }
  /** The client went away. */
  | { type: 'client-closed' };

/** Why the session ended before the relay; the session log line's outcome. */
export type CloseReason =
  | 'quit'
  | 'line-too-long'
  | 'too-many-commands'
  | 'too-many-failures'
  | 'idle-timeout'
  | 'http'
  | 'client-closed';

export type SmtpAction =
  | { type: 'send'; reply: string }
  /** Send nothing more; upgrade the socket, throwing away anything the client sent before the handshake. */
  | { type: 'start-tls' }
  | { type: 'authenticate'; username: string; password: string; heloName: string }
  /** The `235` has been queued; from now on bytes flow untouched, starting with any pipelined ones. */
  | { type: 'start-relay' }
  | { type: 'close'; reason: CloseReason };

export interface Transition {
  state: SmtpState;
  actions: SmtpAction[];
}

export function initialState(config: SmtpFrontConfig): SmtpState {
  return {
    phase: { name: 'new' },
    secure: config.tls === 'implicit',
    heloName: undefined,
    commands: 0,
    failures: 0,
  };
}

/** Whether AUTH is offered and accepted now: never in clear text on a STARTTLS listener. */
export function authAllowed(config: SmtpFrontConfig, state: SmtpState): boolean {
  return config.tls !== 'starttls' || state.secure;
}

function offerStartTls(config: SmtpFrontConfig, state: SmtpState): boolean {
  return config.tls === 'starttls' && !state.secure;
}

const send = (reply: string): SmtpAction => ({ type: 'send', reply });

function closeWith(state: SmtpState, reply: string | undefined, reason: CloseReason): Transition {
  const actions: SmtpAction[] = reply === undefined ? [] : [send(reply)];
  actions.push({ type: 'close', reason });
  return { state: { ...state, phase: { name: 'closed' } }, actions };
}

function reply(state: SmtpState, text: string, phase: SmtpPhase = { name: 'command' }): Transition {
  return { state: { ...state, phase }, actions: [send(text)] };
}

function saslFailureReply(failure: SaslFailure): string {
  return failure === 'bad-base64' ? REPLY.cannotDecode : REPLY.malformedPlain;
}

export function step(config: SmtpFrontConfig, state: SmtpState, event: SmtpEvent): Transition {
  const phase = state.phase;
  if (phase.name === 'closed' || phase.name === 'relay') return { state, actions: [] };

  switch (event.type) {
    case 'connected':
      if (phase.name !== 'new') return { state, actions: [] };
      return reply(state, greeting(config.serverName));
    case 'client-closed':
      return {
        state: { ...state, phase: { name: 'closed' } },
        actions: [{ type: 'close', reason: 'client-closed' }],
      };
    case 'idle-timeout':
      return closeWith(state, REPLY.idleTimeout, 'idle-timeout');
    case 'line-too-long':
      return closeWith(state, REPLY.lineTooLong, 'line-too-long');
    case 'tls-ready':
      if (phase.name !== 'starting-tls') return { state, actions: [] };
      // RFC 3207 §4.2: forget everything learned before the handshake; the client must EHLO again.
      return {
        state: { ...state, phase: { name: 'command' }, secure: true, heloName: undefined },
        actions: [],
      };
    case 'auth-succeeded':
      if (phase.name !== 'authenticating') return { state, actions: [] };
      return {
        state: { ...state, phase: { name: 'relay' } },
        actions: [send(REPLY.authSucceeded), { type: 'start-relay' }],
      };
    case 'auth-failed': {
      if (phase.name !== 'authenticating') return { state, actions: [] };
      const text = loginFailureReply(event.error, event.consentHint);
      // Temporary failures are not the client's fault and do not count against it.
      const counts = !text.startsWith('4');
      const failures = state.failures + (counts ? 1 : 0);
      const next = { ...state, failures, phase: { name: 'command' } as SmtpPhase };
      if (failures >= config.maxFailedLogins) {
        return {
          state: { ...next, phase: { name: 'closed' } },
          actions: [send(text), send(REPLY.tooManyFailures), { type: 'close', reason: 'too-many-failures' }],
        };
      }
      return { state: next, actions: [send(text)] };
    }
    case 'line':
      return onLine(config, state, event.line);
  }
}

function onLine(config: SmtpFrontConfig, state: SmtpState, line: string): Transition {
  const phase = state.phase;
  switch (phase.name) {
    case 'command':
      return onCommand(config, state, line);
    case 'plain-response':
      if (line.trim() === '*') return reply(state, REPLY.authCancelled);
      return authenticatePlain(state, line);
    case 'login-username': {
      if (line.trim() === '*') return reply(state, REPLY.authCancelled);
      const username = decodeLoginField(line);
      if (!username.ok) return reply(state, saslFailureReply(username.failure));
      return reply(state, REPLY.loginPassword, { name: 'login-password', username: username.value });
    }
    case 'login-password': {
      if (line.trim() === '*') return reply(state, REPLY.authCancelled);
      const password = decodeLoginField(line);
      if (!password.ok) return reply(state, saslFailureReply(password.failure));
      return authenticate(state, phase.username, password.value);
    }
    default:
      // 'new', 'starting-tls', 'authenticating': the session does not read lines then; ignore defensively.
      return { state, actions: [] };
  }
}

function authenticate(state: SmtpState, username: string, password: string): Transition {
  return {
    state: { ...state, phase: { name: 'authenticating', username } },
    // HELO/EHLO is checked before AUTH starts, so heloName is set here.
    actions: [{ type: 'authenticate', username, password, heloName: state.heloName ?? 'localhost' }],
  };
}

function authenticatePlain(state: SmtpState, response: string): Transition {
  const creds = decodePlain(response);
  if (!creds.ok) return reply(state, saslFailureReply(creds.failure));
  return authenticate(state, creds.value.username, creds.value.password);
}

function onCommand(config: SmtpFrontConfig, state0: SmtpState, line: string): Transition {
  const state = { ...state0, commands: state0.commands + 1 };
  if (state.commands > config.maxCommandsBeforeLogin)
    return closeWith(state, REPLY.tooManyCommands, 'too-many-commands');
  const command = parseCommand(line);
  switch (command.kind) {
    case 'ehlo':
      return reply(
        { ...state, heloName: command.name },
        ehloReply(config.serverName, {
          maxMessageSize: config.maxMessageSize,
          offerStartTls: offerStartTls(config, state),
          offerAuth: authAllowed(config, state),
        }),
      );
    case 'helo':
      return reply({ ...state, heloName: command.name }, heloReply(config.serverName));
    case 'starttls':
      if (state.secure) return reply(state, REPLY.tlsActive);
      if (!offerStartTls(config, state)) return reply(state, REPLY.startTlsUnavailable);
      return {
        state: { ...state, phase: { name: 'starting-tls' } },
        actions: [send(REPLY.readyForTls), { type: 'start-tls' }],
      };
    case 'auth': {
      if (!authAllowed(config, state)) return reply(state, REPLY.tlsRequired);
      if (state.heloName === undefined) return reply(state, REPLY.heloFirst);
      const ir = command.initialResponse;
      if (command.mechanism === 'PLAIN') {
        if (ir === undefined) return reply(state, REPLY.emptyChallenge, { name: 'plain-response' });
        return authenticatePlain(state, ir);
      }
      if (command.mechanism === 'LOGIN') {
        if (ir === undefined) return reply(state, REPLY.loginUsername, { name: 'login-username' });
        const username = decodeLoginField(ir);
        if (!username.ok) return reply(state, saslFailureReply(username.failure));
        return reply(state, REPLY.loginPassword, { name: 'login-password', username: username.value });
      }
      return reply(state, REPLY.unknownMechanism);
    }
    case 'rset':
    case 'noop':
      return reply(state, REPLY.ok);
    case 'quit':
      return closeWith(state, REPLY.bye, 'quit');
    case 'mail-transaction':
      return reply(state, authAllowed(config, state) ? REPLY.authRequired : REPLY.tlsRequired);
    case 'not-implemented':
      return reply(state, REPLY.notImplemented);
    case 'http':
      return closeWith(state, REPLY.http, 'http');
    case 'syntax-error':
      return reply(state, command.reply);
    case 'empty':
    case 'unknown':
      return reply(state, REPLY.unknownCommand);
  }
}

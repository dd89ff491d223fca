/**
 * The POP3 front's state machine for the AUTHORIZATION state: `(state, event) -> (state, actions[])`,
 * pure.
 *
 * Everything asynchronous (TLS handshake, local password check, token, upstream login) is an action out
 * and an event back in, so a unit test replays whole conversations without a socket. Once the upstream
 * accepted the token the machine hands the connection to the relay and stays out of the way.
 */
import type { TlsMode } from '../../config/types.js';
import {
  countFailure,
  loginAllowed,
  HTTP_REQUEST,
  TOO_MANY_COMMANDS,
  TOO_MANY_FAILURES,
  type FrontAction,
  type FrontEvent,
  type Machine,
  type Transition as Step,
} from '../shared/front.js';
import { decodeLoginResponse, decodePlain } from '../shared/sasl.js';
import { Secret } from '../shared/secret.js';
import type { SessionOutcome } from '../shared/types.js';
import type { Advertised } from '../shared/upstream-capabilities.js';
import { parseCommand } from './parser.js';
import { REPLY, capaReply, loginFailureReply, loginSucceededReply, syntaxError } from './replies.js';

export interface Pop3FrontConfig {
  /** The listener's TLS mode: 'starttls' offers STLS and refuses logins until it is done. */
  tls: TlsMode;
  /** Lines accepted before a successful login; the next one ends the connection. */
  maxCommandsBeforeLogin: number;
  /** Failed logins per connection; the connection ends after the last allowed one fails. */
  maxFailedLogins: number;
  /** What the reachable upstreams share, as known when the session started (see shared/upstream-capabilities). */
  upstream: Advertised;
}

export type Pop3Phase =
  /** Waiting for a command; `user` is the name from a USER that awaits its PASS. */
  | { name: 'command'; user?: string }
  /** `AUTH PLAIN` got `+ `; the next line is the response. */
  | { name: 'plain-response' }
  /** `AUTH LOGIN` got the user name prompt; the next line is the base64 user name. */
  | { name: 'login-username' }
  /** The password prompt was sent for `username`. */
  | { name: 'login-password'; username: string }
  | { name: 'starting-tls' }
  | { name: 'authenticating'; username: string }
  | { name: 'relay' }
  | { name: 'closed' };

export interface Pop3State {
  phase: Pop3Phase;
  /** Whether the client connection is encrypted (implicit TLS, or after STLS). */
  secure: boolean;
  commands: number;
  failures: number;
}

export type Pop3Event = { type: 'line'; line: string } | { type: 'line-too-long' } | FrontEvent;

export type Pop3Action = FrontAction;

export type Transition = Step<Pop3State, Pop3Action>;

const READING = new Set<Pop3Phase['name']>(['command', 'plain-response', 'login-username', 'login-password']);

/** Phases in which the machine reads client lines. */
export function isReading(phase: Pop3Phase): boolean {
  return READING.has(phase.name);
}

export function initialState(config: Pop3FrontConfig): Pop3State {
  return { phase: { name: 'command' }, secure: config.tls === 'implicit', commands: 0, failures: 0 };
}

/** The machine with its configuration, as the shared front drives it. */
export function pop3Machine(config: Pop3FrontConfig): Machine<Pop3State, Pop3Event, Pop3Action> {
  return {
    initial: () => reply(initialState(config), REPLY.greeting),
    step: (state, event) => step(config, state, event),
    reading: (state) => isReading(state.phase),
  };
}

const send = (reply: string): Pop3Action => ({ type: 'send', reply });
const COMMAND: Pop3Phase = { name: 'command' };

function closeWith(
  state: Pop3State,
  reply: string | undefined,
  outcome: SessionOutcome,
  reason?: string,
): Transition {
  const actions: Pop3Action[] = reply === undefined ? [] : [send(reply)];
  actions.push({ type: 'close', outcome, ...(reason === undefined ? {} : { reason }) });
  return { state: { ...state, phase: { name: 'closed' } }, actions };
}

function reply(state: Pop3State, text: string, phase: Pop3Phase = COMMAND): Transition {
  return { state: { ...state, phase }, actions: [send(text)] };
}

export function step(config: Pop3FrontConfig, state: Pop3State, event: Pop3Event): Transition {
  const phase = state.phase;
  if (phase.name === 'closed' || phase.name === 'relay') return { state, actions: [] };

  switch (event.type) {
    case 'shutdown':
      // Mid-handshake the socket belongs to TLS: a clear-text line there would only garble it.
      return closeWith(state, phase.name === 'starting-tls' ? undefined : REPLY.shutdown, 'shutdown');
    case 'idle-timeout':
      // A login in flight is not idleness; the session does not arm the timer then.
      if (!isReading(phase)) return { state, actions: [] };
      return closeWith(state, REPLY.idleTimeout, 'timeout');
    case 'delivered':
      // SMTP's local transaction only; a POP3 session never delivers.
      return { state, actions: [] };
    case 'line-too-long':
      return closeWith(state, REPLY.lineTooLong, 'limit', 'line-too-long');
    case 'tls-ready':
      if (phase.name !== 'starting-tls') return { state, actions: [] };
      // RFC 2595 §4: everything learned before the handshake is forgotten (a pending USER too).
      return { state: { ...state, phase: COMMAND, secure: true }, actions: [] };
    case 'auth-succeeded':
      if (phase.name !== 'authenticating') return { state, actions: [] };
      return {
        state: { ...state, phase: { name: 'relay' } },
        actions: [send(loginSucceededReply(event.text)), { type: 'start-relay' }],
      };
    case 'auth-failed': {
      if (phase.name !== 'authenticating') return { state, actions: [] };
      const text = loginFailureReply(event.error, event.consentHint);
      const failures = countFailure(state.failures, event.error);
      // RFC 1939 §7: after a failed PASS the client starts again with USER.
      const next: Pop3State = { ...state, failures, phase: COMMAND };
      if (failures >= config.maxFailedLogins) {
        return closeWith(next, text, event.error.code, TOO_MANY_FAILURES);
      }
      return { state: next, actions: [send(text)] };
    }
    case 'line':
      return onLine(config, state, event.line);
  }
}

function onLine(config: Pop3FrontConfig, state0: Pop3State, line: string): Transition {
  if (!isReading(state0.phase)) return { state: state0, actions: [] };
  // SASL responses count too: a client must not be able to loop on `AUTH PLAIN` / `*` for ever.
  const state = { ...state0, commands: state0.commands + 1 };
  if (state.commands > config.maxCommandsBeforeLogin) {
    return closeWith(state, REPLY.tooManyCommands, 'limit', TOO_MANY_COMMANDS);
  }
  const phase = state.phase;
  switch (phase.name) {
    case 'plain-response':
      // RFC 5034 §4: a lone `*` cancels the exchange.
      if (line.trim() === '*') return reply(state, REPLY.authCancelled);
      return authenticatePlain(state, line.trim());
    case 'login-username': {
      if (line.trim() === '*') return reply(state, REPLY.authCancelled);
      const username = loginField(line);
      if (username === undefined) return reply(state, REPLY.malformedLogin);
      return reply(state, REPLY.loginPassword, { name: 'login-password', username });
    }
    case 'login-password': {
      if (line.trim() === '*') return reply(state, REPLY.authCancelled);
      const password = loginField(line);
      if (password === undefined) return reply(state, REPLY.malformedLogin);
      return authenticate(state, phase.username, password);
    }
    default:
      return onCommand(config, state, line);
  }
}

/** One AUTH LOGIN response: base64 text, not empty (neither a user name nor a password can be). */
function loginField(line: string): string | undefined {
  const value = decodeLoginResponse(line.trim());
  return value === undefined || value === '' ? undefined : value;
}

function authenticate(state: Pop3State, username: string, password: string): Transition {
  return {
    state: { ...state, phase: { name: 'authenticating', username } },
    actions: [{ type: 'authenticate', username, password: new Secret(password) }],
  };
}

function authenticatePlain(state: Pop3State, response: string): Transition {
  // RFC 5034 §4: `=` is an empty response, which is no PLAIN message at all.
  const creds = decodePlain(response === '=' ? '' : response);
  if ('error' in creds) return reply(state, REPLY.malformedPlain);
  return authenticate(state, creds.username, creds.password);
}

function onCommand(config: Pop3FrontConfig, state: Pop3State, line: string): Transition {
  const pendingUser = state.phase.name === 'command' ? state.phase.user : undefined;
  const command = parseCommand(line);
  const allowed = loginAllowed(config.tls, state.secure);
  switch (command.kind) {
    case 'capa':
      // CAPA between USER and PASS is harmless; keep the pending USER (RFC 2449 allows CAPA anywhere).
      return reply(state, capaReply(config.tls, state.secure, config.upstream), {
        name: 'command',
        ...userOf(pendingUser),
      });
    case 'user':
      if (!allowed) return reply(state, REPLY.tlsRequired);
      return reply(state, REPLY.userOk, { name: 'command', user: command.name });
    case 'pass':
      if (!allowed) return reply(state, REPLY.tlsRequired);
      if (pendingUser === undefined) return reply(state, REPLY.passWithoutUser);
      return authenticate(state, pendingUser, command.password);
    case 'auth-list':
      if (!allowed) return reply(state, REPLY.tlsRequired);
      return reply(state, REPLY.mechanisms);
    case 'auth':
      if (!allowed) return reply(state, REPLY.tlsRequired);
      if (command.mechanism === 'LOGIN') {
        if (command.initialResponse === undefined) {
          return reply(state, REPLY.loginUsername, { name: 'login-username' });
        }
        // RFC 5034 §4: an initial response is the user name; `=` (empty) is none at all.
        const username = loginField(command.initialResponse === '=' ? '' : command.initialResponse);
        if (username === undefined) return reply(state, REPLY.malformedLogin);
        return reply(state, REPLY.loginPassword, { name: 'login-password', username });
      }
      if (command.mechanism !== 'PLAIN') return reply(state, REPLY.unknownMechanism);
      if (command.initialResponse === undefined) {
        return reply(state, REPLY.emptyChallenge, { name: 'plain-response' });
      }
      return authenticatePlain(state, command.initialResponse);
    case 'stls':
      if (state.secure) return reply(state, REPLY.tlsActive);
      if (config.tls !== 'starttls') return reply(state, REPLY.stlsUnavailable);
      return {
        state: { ...state, phase: { name: 'starting-tls' } },
        actions: [send(REPLY.beginTls), { type: 'start-tls' }],
      };
    case 'quit':
      return closeWith(state, REPLY.bye, 'client-quit');
    case 'apop':
      return reply(state, REPLY.apop);
    case 'needs-login':
      return reply(state, allowed ? REPLY.needsLogin : REPLY.tlsRequired);
    case 'http':
      return closeWith(state, REPLY.http, 'protocol-error', HTTP_REQUEST);
    case 'syntax-error':
      return reply(state, syntaxError(command.command));
    case 'empty':
    case 'unknown':
      return reply(state, REPLY.unknownCommand);
  }
}

function userOf(user: string | undefined): { user?: string } {
  return user === undefined ? {} : { user };
}

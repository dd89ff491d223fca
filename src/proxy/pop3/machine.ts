/**
 * The POP3 front's state machine for the AUTHORIZATION state: `(state, event) -> (state, actions[])`,
 * pure.
 *
 * Everything asynchronous (TLS handshake, local password check, token, upstream login) is an action out
 * and an event back in, so a unit test replays whole conversations without a socket. Once the upstream
 * accepted the token the machine hands the connection to the relay and stays out of the way.
 */
import type { TlsMode } from '../../config/types.js';
import { isProxyError, ProxyError } from '../../errors.js';
import { decodePlain } from '../shared/sasl.js';
import { parseCommand } from './parser.js';
import {
  REPLY,
  capaReply,
  isTemporary,
  loginAllowed,
  loginFailureReply,
  loginSucceededReply,
} from './replies.js';

export interface Pop3FrontConfig {
  /** The listener's TLS mode: 'starttls' offers STLS and refuses logins until it is done. */
  tls: TlsMode;
  /** Lines accepted before a successful login; the next one ends the connection. */
  maxCommandsBeforeLogin: number;
  /** Failed logins per connection; the connection ends after the last allowed one fails. */
  maxFailedLogins: number;
}

export type Pop3Phase =
  | { name: 'new' }
  /** Waiting for a command; `user` is the name from a USER that awaits its PASS. */
  | { name: 'command'; user?: string }
  /** `AUTH PLAIN` got `+ `; the next line is the response. */
  | { name: 'plain-response' }
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

export type Pop3Event =
  | { type: 'connected' }
  | { type: 'line'; line: string }
  | { type: 'line-too-long' }
  | { type: 'tls-ready' }
  /** `text`: the upstream's `+OK` text, passed on to the client. */
  | { type: 'auth-succeeded'; text?: string }
  | { type: 'auth-failed'; error: unknown; consentHint?: string }
  | { type: 'idle-timeout' }
  | { type: 'shutdown' }
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
  | 'shutdown'
  | 'client-closed';

export type Pop3Action =
  | { type: 'send'; reply: string }
  /** Send nothing more; upgrade the socket, throwing away anything the client sent before the handshake. */
  | { type: 'start-tls' }
  | { type: 'authenticate'; username: string; password: string }
  /** The `+OK` has been queued; from now on bytes flow untouched, starting with any pipelined ones. */
  | { type: 'start-relay' }
  | { type: 'close'; reason: CloseReason };

export interface Transition {
  state: Pop3State;
  actions: Pop3Action[];
}

/** Phases in which the machine reads client lines. */
export function isReading(phase: Pop3Phase): boolean {
  return phase.name === 'command' || phase.name === 'plain-response';
}

export function initialState(config: Pop3FrontConfig): Pop3State {
  return { phase: { name: 'new' }, secure: config.tls === 'implicit', commands: 0, failures: 0 };
}

const send = (reply: string): Pop3Action => ({ type: 'send', reply });
const COMMAND: Pop3Phase = { name: 'command' };

function closeWith(state: Pop3State, reply: string | undefined, reason: CloseReason): Transition {
  const actions: Pop3Action[] = reply === undefined ? [] : [send(reply)];
  actions.push({ type: 'close', reason });
  return { state: { ...state, phase: { name: 'closed' } }, actions };
}

function reply(state: Pop3State, text: string, phase: Pop3Phase = COMMAND): Transition {
  return { state: { ...state, phase }, actions: [send(text)] };
}

export function step(config: Pop3FrontConfig, state: Pop3State, event: Pop3Event): Transition {
  const phase = state.phase;
  if (phase.name === 'closed' || phase.name === 'relay') return { state, actions: [] };

  switch (event.type) {
    case 'connected':
      if (phase.name !== 'new') return { state, actions: [] };
      return reply(state, REPLY.greeting);
    case 'client-closed':
      return closeWith(state, undefined, 'client-closed');
    case 'shutdown':
      // Mid-handshake the socket belongs to TLS: a clear-text line there would only garble it.
      return closeWith(state, phase.name === 'starting-tls' ? undefined : REPLY.shutdown, 'shutdown');
    case 'idle-timeout':
      // A login in flight is not idleness; the session does not arm the timer then.
      if (!isReading(phase)) return { state, actions: [] };
      return closeWith(state, REPLY.idleTimeout, 'idle-timeout');
    case 'line-too-long':
      return closeWith(state, REPLY.lineTooLong, 'line-too-long');
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
      const error = isProxyError(event.error)
        ? event.error
        : new ProxyError('upstream-unavailable', 'login failed', { cause: event.error });
      const text = loginFailureReply(error, event.consentHint);
      // Temporary failures are not the client's fault and do not count against it.
      const failures = state.failures + (isTemporary(text) ? 0 : 1);
      // RFC 1939 §7: after a failed PASS the client starts again with USER.
      const next: Pop3State = { ...state, failures, phase: COMMAND };
      if (failures >= config.maxFailedLogins) return closeWith(next, text, 'too-many-failures');
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
    return closeWith(state, REPLY.tooManyCommands, 'too-many-commands');
  }
  if (state.phase.name === 'plain-response') {
    // RFC 5034 §4: a lone `*` cancels the exchange.
    if (line.trim() === '*') return reply(state, REPLY.authCancelled);
    return authenticatePlain(state, line.trim());
  }
  return onCommand(config, state, line);
}

function authenticate(state: Pop3State, username: string, password: string): Transition {
  return {
    state: { ...state, phase: { name: 'authenticating', username } },
    actions: [{ type: 'authenticate', username, password }],
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
      return reply(state, capaReply(config.tls, state.secure), { name: 'command', ...userOf(pendingUser) });
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
      return closeWith(state, REPLY.bye, 'quit');
    case 'apop':
      return reply(state, REPLY.apop);
    case 'needs-login':
      return reply(state, allowed ? REPLY.needsLogin : REPLY.tlsRequired);
    case 'http':
      return closeWith(state, REPLY.http, 'http');
    case 'syntax-error':
      return reply(state, command.reply);
    case 'empty':
    case 'unknown':
      return reply(state, REPLY.unknownCommand);
  }
}

function userOf(user: string | undefined): { user?: string } {
  return user === undefined ? {} : { user };
}

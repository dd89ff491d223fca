/**
 * The IMAP front before login as a pure state machine: `step(state, event) -> { state, actions }`.
 * Actions are data; the session performs them and feeds results (TLS ready, login outcome) back in
 * as events. A whole conversation can be replayed in a unit test without a socket.
 */
import type { TlsMode } from '../../config/types.js';
import {
  countFailure,
  loginAllowed,
  TOO_MANY_COMMANDS,
  TOO_MANY_FAILURES,
  type FrontAction,
  type FrontEvent,
  type Machine,
  type Transition,
} from '../shared/front.js';
import { decodeLoginResponse, decodePlain } from '../shared/sasl.js';
import { Secret } from '../shared/secret.js';
import type { SessionOutcome } from '../shared/types.js';
import type { Frame, FramingErrorKind } from './framer.js';
import { astring, parseCommand, saslResponse, type Command } from './parser.js';
import {
  BYE,
  capabilityLine,
  CONTINUE,
  greeting,
  ID_LINE,
  loggedIn,
  loginFailureReply,
  malformed,
  noArguments,
  REPLY,
  tagged,
} from './replies.js';

export interface MachineConfig {
  tls: TlsMode;
  maxCommandsBeforeLogin: number;
  maxFailedLogins: number;
}

export type Phase =
  | { name: 'ready' }
  /** AUTHENTICATE PLAIN without initial response: waiting for the client's base64 line. */
  | { name: 'sasl-plain'; tag: string }
  | { name: 'sasl-login-user'; tag: string }
  | { name: 'sasl-login-pass'; tag: string; username: string }
  /** Waiting for the login to finish (local check, token, upstream). */
  | { name: 'authenticating'; tag: string }
  /** `OK Begin TLS` sent; waiting for the handshake. */
  | { name: 'starting-tls' }
  | { name: 'relay' }
  | { name: 'closed' };

export interface State {
  phase: Phase;
  /** TLS is on for the client leg (implicit listener, or after STARTTLS). */
  secure: boolean;
  commands: number;
  failures: number;
}

export type Event =
  | { type: 'frame'; frame: Frame }
  | { type: 'continue-literal' }
  | { type: 'framing-error'; kind: FramingErrorKind }
  | FrontEvent;

export type Action = FrontAction;

export type Step = Transition<State, Action>;

export function initialState(config: MachineConfig, secure: boolean): Step {
  return {
    state: { phase: { name: 'ready' }, secure, commands: 0, failures: 0 },
    actions: [send(greeting(config.tls, secure))],
  };
}

/** The machine with its configuration, as the shared front drives it. */
export function imapMachine(config: MachineConfig, secure: boolean): Machine<State, Event, Action> {
  return {
    initial: () => initialState(config, secure),
    step: (state, event) => step(config, state, event),
    reading: (state) => isReading(state.phase),
  };
}

/** The session reads client bytes only in these phases (otherwise they wait, unparsed, in order). */
export function isReading(phase: Phase): boolean {
  return phase.name === 'ready' || phase.name.startsWith('sasl-');
}

const send = (reply: string): Action => ({ type: 'send', reply });
const bye = (state: State, line: string, outcome: SessionOutcome, reason?: string): Step => ({
  state: { ...state, phase: { name: 'closed' } },
  actions: [send(line), { type: 'close', outcome, ...(reason ? { reason } : {}) }],
});

export function step(config: MachineConfig, state: State, event: Event): Step {
  const phase = state.phase;
  if (phase.name === 'closed') return { state, actions: [] };
  switch (event.type) {
    case 'shutdown':
      if (phase.name === 'relay') return { state: { ...state, phase: { name: 'closed' } }, actions: [] };
      // Mid-handshake the socket carries TLS records; a clear-text BYE would only garble them.
      if (phase.name === 'starting-tls') {
        return {
          state: { ...state, phase: { name: 'closed' } },
          actions: [{ type: 'close', outcome: 'shutdown' }],
        };
      }
      return bye(state, BYE.shutdown, 'shutdown');
    case 'idle-timeout':
      if (!isReading(phase)) return { state, actions: [] };
      return bye(state, BYE.idle, 'timeout');
    case 'framing-error':
      return bye(state, BYE[event.kind], 'limit', event.kind);
    case 'continue-literal':
      return { state, actions: [send(CONTINUE.literal)] };
    case 'delivered':
      // SMTP's local transaction only; an IMAP session never delivers.
      return { state, actions: [] };
    case 'tls-ready':
      if (phase.name !== 'starting-tls') return { state, actions: [] };
      return { state: { ...state, secure: true, phase: { name: 'ready' } }, actions: [] };
    case 'auth-succeeded': {
      if (phase.name !== 'authenticating') return { state, actions: [] };
      return {
        state: { ...state, phase: { name: 'relay' } },
        actions: [send(tagged(phase.tag, loggedIn(event.capabilities, event.text))), { type: 'start-relay' }],
      };
    }
    case 'auth-failed': {
      if (phase.name !== 'authenticating') return { state, actions: [] };
      const failures = countFailure(state.failures, event.error);
      const next: State = { ...state, failures, phase: { name: 'ready' } };
      const reply = send(tagged(phase.tag, loginFailureReply(event.error, event.consentHint)));
      if (failures >= config.maxFailedLogins) {
        const closed = bye(next, BYE.tooManyFailures, event.error.code, TOO_MANY_FAILURES);
        return { state: closed.state, actions: [reply, ...closed.actions] };
      }
      return { state: next, actions: [reply] };
    }
    case 'frame':
      return onFrame(config, state, event.frame);
  }
}

function onFrame(config: MachineConfig, state: State, frame: Frame): Step {
  if (!isReading(state.phase)) return { state, actions: [] };
  const counted: State = { ...state, commands: state.commands + 1 };
  if (counted.commands > config.maxCommandsBeforeLogin) {
    return bye(counted, BYE.tooManyCommands, 'limit', TOO_MANY_COMMANDS);
  }
  const phase = state.phase;
  switch (phase.name) {
    case 'sasl-plain':
    case 'sasl-login-user':
    case 'sasl-login-pass':
      return onSaslResponse(counted, phase, frame);
    default:
      break;
  }
  const parsed = parseCommand(frame);
  if (!parsed.ok) {
    return { state: counted, actions: [send(tagged(parsed.tag, malformed(parsed.message)))] };
  }
  return onCommand(config, counted, parsed.command);
}

function onCommand(config: MachineConfig, state: State, command: Command): Step {
  const { tag, name, args } = command;
  const reply = (...lines: string[]): Step => ({ state, actions: lines.map(send) });
  const done = (text: string): string => tagged(tag, text);
  const noArgs = (): Step | undefined => (args.length > 0 ? reply(done(noArguments(name))) : undefined);
  switch (name) {
    case 'CAPABILITY':
      return noArgs() ?? reply(capabilityLine(config.tls, state.secure), done(REPLY.capabilityDone));
    case 'NOOP':
      return noArgs() ?? reply(done(REPLY.noopDone));
    case 'LOGOUT': {
      const bad = noArgs();
      if (bad) return bad;
      return {
        state: { ...state, phase: { name: 'closed' } },
        actions: [send(BYE.logout), send(done(REPLY.logoutDone)), { type: 'close', outcome: 'client-quit' }],
      };
    }
    case 'ID':
      // RFC 2971: one argument, a list of field/value pairs or NIL. The client's ID is not forwarded.
      if (args.length !== 1) return reply(done(REPLY.idArguments));
      return reply(ID_LINE, done(REPLY.idDone));
    case 'STARTTLS': {
      const bad = noArgs();
      if (bad) return bad;
      if (state.secure) return reply(done(REPLY.tlsActive));
      if (config.tls !== 'starttls') return reply(done(REPLY.startTlsUnavailable));
      return {
        state: { ...state, phase: { name: 'starting-tls' } },
        actions: [send(done(REPLY.beginTls)), { type: 'start-tls' }],
      };
    }
    case 'LOGIN': {
      if (!loginAllowed(config.tls, state.secure)) return reply(done(REPLY.tlsRequired));
      const username = astring(args[0]);
      const password = astring(args[1]);
      if (args.length !== 2 || username === undefined || password === undefined) {
        return reply(done(REPLY.loginArguments));
      }
      return login(state, tag, username, password);
    }
    case 'AUTHENTICATE':
      return onAuthenticate(config, state, command);
    default:
      return reply(done(REPLY.needsLogin));
  }
}

function login(state: State, tag: string, username: string, password: string): Step {
  if (username === '' || password === '') {
    return {
      state: { ...state, phase: { name: 'ready' } },
      actions: [send(tagged(tag, REPLY.authenticationFailed))],
    };
  }
  return {
    state: { ...state, phase: { name: 'authenticating', tag } },
    actions: [{ type: 'authenticate', username, password: new Secret(password) }],
  };
}

function onAuthenticate(config: MachineConfig, state: State, command: Command): Step {
  const { tag, args } = command;
  const reply = (text: string): Step => ({ state, actions: [send(tagged(tag, text))] });
  if (!loginAllowed(config.tls, state.secure)) return reply(REPLY.tlsRequired);
  const mechanism = args[0]?.kind === 'atom' ? args[0].value.toUpperCase() : undefined;
  if (mechanism === undefined || args.length > 2 || (args[1] !== undefined && args[1].kind !== 'atom')) {
    return reply(REPLY.authenticateArguments);
  }
  // RFC 4959: "=" is an empty initial response; absent means "send a continuation".
  const initial = args[1]?.kind === 'atom' ? (args[1].value === '=' ? '' : args[1].value) : undefined;
  if (mechanism === 'PLAIN') {
    if (initial === undefined) {
      return { state: { ...state, phase: { name: 'sasl-plain', tag } }, actions: [send(CONTINUE.empty)] };
    }
    return plainResponse(state, tag, initial);
  }
  if (mechanism === 'LOGIN') {
    if (initial === undefined) {
      return {
        state: { ...state, phase: { name: 'sasl-login-user', tag } },
        actions: [send(CONTINUE.loginUsername)],
      };
    }
    const username = decodeLoginResponse(initial);
    if (username === undefined) return reply(REPLY.badInitialResponse);
    return {
      state: { ...state, phase: { name: 'sasl-login-pass', tag, username } },
      actions: [send(CONTINUE.loginPassword)],
    };
  }
  return reply(REPLY.unknownMechanism);
}

function plainResponse(state: State, tag: string, base64: string): Step {
  const decoded = decodePlain(base64);
  if ('error' in decoded) {
    return {
      state: { ...state, phase: { name: 'ready' } },
      actions: [send(tagged(tag, malformed(decoded.error)))],
    };
  }
  return login(state, tag, decoded.username, decoded.password);
}

function onSaslResponse(
  state: State,
  phase: Extract<Phase, { name: 'sasl-plain' | 'sasl-login-user' | 'sasl-login-pass' }>,
  frame: Frame,
): Step {
  const ready: State = { ...state, phase: { name: 'ready' } };
  const response = saslResponse(frame);
  if (!response.ok) return { state: ready, actions: [send(tagged(phase.tag, REPLY.badSaslResponse))] };
  // RFC 9051 §6.2.2: a lone "*" cancels, answered with BAD.
  if (response.text === '*') return { state: ready, actions: [send(tagged(phase.tag, REPLY.authCancelled))] };
  switch (phase.name) {
    case 'sasl-plain':
      return plainResponse(state, phase.tag, response.text);
    case 'sasl-login-user': {
      const username = decodeLoginResponse(response.text);
      if (username === undefined)
        return { state: ready, actions: [send(tagged(phase.tag, REPLY.badBase64))] };
      return {
        state: { ...state, phase: { name: 'sasl-login-pass', tag: phase.tag, username } },
        actions: [send(CONTINUE.loginPassword)],
      };
    }
    case 'sasl-login-pass': {
      const password = decodeLoginResponse(response.text);
      if (password === undefined)
        return { state: ready, actions: [send(tagged(phase.tag, REPLY.badBase64))] };
      return login(state, phase.tag, phase.username, password);
    }
  }
}

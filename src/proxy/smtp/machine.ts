/**
 * The SMTP front's state machine: `(state, event) -> (state, actions[])`, pure.
 *
 * Everything asynchronous (TLS handshake, local password check, token, upstream login, a send) is an
 * action out and an event back in, so a unit test replays whole conversations without a socket. Once
 * the upstream accepted the token the machine hands the connection to the relay and stays out of the
 * way. After a local login (Graph mode) it runs the mail transaction itself: see ./transaction.ts.
 */
import type { TlsMode } from '../../config/types.js';
import {
  countFailure,
  loginAllowed,
  tlsOffered,
  HTTP_REQUEST,
  TOO_MANY_COMMANDS,
  TOO_MANY_FAILURES,
  type AuthenticateAction,
  type FrontAction,
  type FrontEvent,
  type Machine,
  type Transition as Step,
} from '../shared/front.js';
import { Secret } from '../shared/secret.js';
import type { Advertised } from '../shared/upstream-capabilities.js';
import type { SessionOutcome } from '../shared/types.js';
import { parseCommand } from './parser.js';
import { REPLY, ehloReply, greeting, heloReply, loginFailureReply, syntaxError } from './replies.js';
import { decodeLoginField, decodePlain, type SaslFailure } from './sasl.js';
import type { Expect } from './framer.js';
import { onTransactionEvent, type Transaction } from './transaction.js';

export interface SmtpFrontConfig {
  /** Our name in the greeting and EHLO reply. */
  serverName: string;
  /** The listener's TLS mode: 'starttls' offers STARTTLS and refuses AUTH until it is done. */
  tls: TlsMode;
  /** SIZE advertised in EHLO (bytes) while the upstreams' own lists are not all known. */
  maxMessageSize: number;
  /** What the reachable upstreams share, as known when the session started (see shared/upstream-capabilities). */
  upstream: Advertised;
  /** Commands accepted before a successful login; the next one ends the connection. */
  maxCommandsBeforeLogin: number;
  /** Failed logins per connection; the connection ends after the last allowed one fails. */
  maxFailedLogins: number;
  /** After a local login: recipients per message (default 500, Graph's limit). */
  maxRecipients?: number;
  /** After a local login: messages per connection (default 100). */
  maxMessagesPerSession?: number;
}

export type SmtpPhase =
  | { name: 'command' }
  | { name: 'plain-response' }
  | { name: 'login-username' }
  | { name: 'login-password'; username: string }
  | { name: 'starting-tls' }
  | { name: 'authenticating'; username: string }
  | { name: 'relay' }
  // After a local login: commands, with the transaction so far (none before MAIL).
  | { name: 'mail'; transaction: Transaction | undefined }
  /** Reading the DATA body. */
  | { name: 'data'; transaction: Transaction }
  /** Reading a BDAT chunk; `keep: false` when it is to be read and refused (no RCPT, too large). */
  | { name: 'bdat'; transaction: Transaction | undefined; size: number; last: boolean; keep: boolean }
  /** A message is with the sender; `closing`: the proxy is stopping, goodbye after the reply. */
  | { name: 'delivering'; closing: boolean }
  | { name: 'closed' };

export interface SmtpState {
  phase: SmtpPhase;
  /** Whether the client connection is encrypted (implicit TLS, or after STARTTLS). */
  secure: boolean;
  /** The client's EHLO/HELO name; the upstream gets it in our EHLO. Forgotten after STARTTLS (RFC 3207 §4.2). */
  heloName: string | undefined;
  commands: number;
  failures: number;
  /** Messages handed to the local sender in this session (Graph mode). */
  messages: number;
}

export type SmtpEvent =
  | { type: 'line'; line: string }
  | { type: 'line-too-long' }
  /** A whole DATA body, dot-unstuffed; empty with `tooLarge` past the size limit. */
  | { type: 'data'; body: Buffer; tooLarge: boolean; overBudget?: boolean }
  /** One BDAT chunk (empty when not kept). */
  | { type: 'bdat-chunk'; chunk: Buffer; size: number; overBudget?: boolean }
  | FrontEvent;

/** SMTP's login also carries the client's EHLO name, which the upstream gets in our EHLO. */
export interface SmtpAuthenticate extends AuthenticateAction {
  heloName: string;
}

export type SmtpAction = FrontAction<SmtpAuthenticate>;

export type Transition = Step<SmtpState, SmtpAction>;

export function initialState(config: SmtpFrontConfig): SmtpState {
  return {
    phase: { name: 'command' },
    secure: config.tls === 'implicit',
    heloName: undefined,
    commands: 0,
    failures: 0,
    messages: 0,
  };
}

/** The machine with its configuration, as the shared front drives it. */
export function smtpMachine(config: SmtpFrontConfig): Machine<SmtpState, SmtpEvent, SmtpAction, Expect> {
  return {
    initial: () => reply(initialState(config), greeting(config.serverName)),
    step: (state, event) => step(config, state, event),
    reading: (state) => READING.has(state.phase.name),
    expect: (state) => expectedFrame(config, state),
  };
}

const READING = new Set([
  'command',
  'plain-response',
  'login-username',
  'login-password',
  'mail',
  'data',
  'bdat',
]);

function expectedFrame(config: SmtpFrontConfig, state: SmtpState): Expect {
  const phase = state.phase;
  if (phase.name === 'data') return { type: 'data', maxBytes: config.maxMessageSize };
  if (phase.name === 'bdat') return { type: 'bdat', size: phase.size, keep: phase.keep };
  return { type: 'line' };
}

const send = (reply: string): SmtpAction => ({ type: 'send', reply });

function closeWith(
  state: SmtpState,
  reply: string | undefined,
  outcome: SessionOutcome,
  reason?: string,
): Transition {
  const actions: SmtpAction[] = reply === undefined ? [] : [send(reply)];
  actions.push({ type: 'close', outcome, ...(reason === undefined ? {} : { reason }) });
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
  if (phase.name === 'mail' || phase.name === 'data' || phase.name === 'bdat' || phase.name === 'delivering')
    return onTransactionEvent(config, state, event);

  switch (event.type) {
    case 'shutdown':
      // Mid-handshake the socket carries TLS records; a clear-text reply would only garble them.
      return closeWith(state, phase.name === 'starting-tls' ? undefined : REPLY.shutdown, 'shutdown');
    case 'idle-timeout':
      return closeWith(state, REPLY.idleTimeout, 'timeout');
    case 'line-too-long':
      return closeWith(state, REPLY.lineTooLong, 'limit', 'line-too-long');
    case 'tls-ready':
      if (phase.name !== 'starting-tls') return { state, actions: [] };
      // RFC 3207 §4.2: forget everything learned before the handshake; the client must EHLO again.
      return {
        state: { ...state, phase: { name: 'command' }, secure: true, heloName: undefined },
        actions: [],
      };
    case 'auth-succeeded':
      if (phase.name !== 'authenticating') return { state, actions: [] };
      // A local login: no upstream to relay to, the transaction is ours (RFC 4954 §4: no new EHLO needed).
      if (event.local === true)
        return reply(state, REPLY.authSucceeded, { name: 'mail', transaction: undefined });
      return {
        state: { ...state, phase: { name: 'relay' } },
        actions: [send(REPLY.authSucceeded), { type: 'start-relay' }],
      };
    case 'auth-failed': {
      if (phase.name !== 'authenticating') return { state, actions: [] };
      const text = loginFailureReply(event.error, event.consentHint);
      const failures = countFailure(state.failures, event.error);
      const next = { ...state, failures, phase: { name: 'command' } as SmtpPhase };
      if (failures >= config.maxFailedLogins) {
        const closed = closeWith(next, REPLY.tooManyFailures, event.error.code, TOO_MANY_FAILURES);
        return { state: closed.state, actions: [send(text), ...closed.actions] };
      }
      return { state: next, actions: [send(text)] };
    }
    case 'line':
      return onLine(config, state, event.line);
    case 'data':
    case 'bdat-chunk':
    case 'delivered':
      // Content and sends exist only after a local login (handled above).
      return { state, actions: [] };
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
      // 'starting-tls', 'authenticating': the session does not read lines then; ignore defensively.
      return { state, actions: [] };
  }
}

function authenticate(state: SmtpState, username: string, password: string): Transition {
  return {
    state: { ...state, phase: { name: 'authenticating', username } },
    // HELO/EHLO is checked before AUTH starts, so heloName is set here.
    actions: [
      {
        type: 'authenticate',
        username,
        password: new Secret(password),
        heloName: state.heloName ?? 'localhost',
      },
    ],
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
    return closeWith(state, REPLY.tooManyCommands, 'limit', TOO_MANY_COMMANDS);
  const command = parseCommand(line);
  switch (command.kind) {
    case 'ehlo':
      return reply(
        { ...state, heloName: command.name },
        ehloReply(config.serverName, {
          maxMessageSize: config.maxMessageSize,
          upstream: config.upstream,
          offerStartTls: tlsOffered(config.tls, state.secure),
          offerAuth: loginAllowed(config.tls, state.secure),
        }),
      );
    case 'helo':
      return reply({ ...state, heloName: command.name }, heloReply(config.serverName));
    case 'starttls':
      if (state.secure) return reply(state, REPLY.tlsActive);
      if (!tlsOffered(config.tls, state.secure)) return reply(state, REPLY.startTlsUnavailable);
      return {
        state: { ...state, phase: { name: 'starting-tls' } },
        actions: [send(REPLY.readyForTls), { type: 'start-tls' }],
      };
    case 'auth': {
      if (!loginAllowed(config.tls, state.secure)) return reply(state, REPLY.tlsRequired);
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
      return closeWith(state, REPLY.bye, 'client-quit');
    case 'mail-transaction':
      return reply(state, loginAllowed(config.tls, state.secure) ? REPLY.authRequired : REPLY.tlsRequired);
    case 'not-implemented':
      return reply(state, REPLY.notImplemented);
    case 'http':
      return closeWith(state, REPLY.http, 'protocol-error', HTTP_REQUEST);
    case 'syntax-error':
      return reply(state, syntaxError(command.verb));
    case 'empty':
    case 'unknown':
      return reply(state, REPLY.unknownCommand);
  }
}

/**
 * The SMTP machine after a local login (Graph mode): the proxy runs the mail transaction itself
 * (RFC 5321 §3.3, RFC 3030 CHUNKING, RFC 2920 PIPELINING) and hands each finished message to the
 * session as a `deliver` action; the send's outcome comes back as `delivered` and becomes the reply
 * to DATA or to the last BDAT. Pure, like the rest of the machine (./machine.ts delegates here).
 *
 * Phases: `mail` (commands; the transaction so far), `data` and `bdat` (content, read by the framer
 * in its content modes), `delivering` (nothing is read: pipelined commands wait, in order, in the
 * framer until the reply is out).
 */
import type { OutgoingMessage } from '../../graph/types.js';
import type { SessionOutcome } from '../shared/types.js';
import {
  REPLY,
  TRANSACTION_REPLY as T,
  bdatReceived,
  heloReply,
  localEhloReply,
  sendOutcomeReply,
  transactionSyntaxError,
} from './replies.js';
import type { SmtpAction, SmtpEvent, SmtpFrontConfig, SmtpPhase, SmtpState, Transition } from './machine.js';
import { parseTransactionCommand } from './transaction-parser.js';

/** One mail transaction from MAIL FROM on. */
export interface Transaction {
  /** The reverse-path ('' for `<>`). */
  from: string;
  /** Forward-paths in the order given, each once. */
  recipients: string[];
  /** BDAT chunks so far; undefined until the first BDAT (then DATA is refused). */
  chunks: Buffer[] | undefined;
  /** Bytes of all BDAT chunks so far. */
  size: number;
}

export const DEFAULT_MAX_RECIPIENTS = 500;
export const DEFAULT_MAX_MESSAGES = 100;

const send = (text: string): SmtpAction => ({ type: 'send', reply: text });
const nothing = (state: SmtpState): Transition => ({ state, actions: [] });

function at(state: SmtpState, phase: SmtpPhase, ...replies: string[]): Transition {
  return { state: { ...state, phase }, actions: replies.map(send) };
}

function mailPhase(transaction: Transaction | undefined): SmtpPhase {
  return { name: 'mail', transaction };
}

function closeWith(
  state: SmtpState,
  replies: string[],
  outcome: SessionOutcome,
  reason?: string,
): Transition {
  return {
    state: { ...state, phase: { name: 'closed' } },
    actions: [...replies.map(send), { type: 'close', outcome, ...(reason === undefined ? {} : { reason }) }],
  };
}

/** Every event once the session has logged in locally. */
export function onTransactionEvent(config: SmtpFrontConfig, state: SmtpState, event: SmtpEvent): Transition {
  const phase = state.phase;
  switch (event.type) {
    case 'shutdown':
      // A message with the sender gets its real reply first: reporting a failure for a message Graph
      // accepted would make the client send it again.
      if (phase.name === 'delivering') return at(state, { name: 'delivering', closing: true });
      return closeWith(state, [REPLY.shutdown], 'shutdown');
    case 'idle-timeout':
      if (phase.name === 'delivering') return nothing(state);
      return closeWith(state, [REPLY.idleTimeout], 'timeout');
    case 'line-too-long':
      return closeWith(state, [REPLY.lineTooLong], 'limit', 'line-too-long');
    case 'delivered': {
      if (phase.name !== 'delivering') return nothing(state);
      const text = sendOutcomeReply(event.outcome, event.consentHint);
      if (phase.closing) return closeWith(state, [text, REPLY.shutdown], 'shutdown');
      return at(state, mailPhase(undefined), text);
    }
    case 'data':
      if (phase.name !== 'data') return nothing(state);
      if (event.tooLarge) return at(state, mailPhase(undefined), T.messageTooLarge);
      if (event.overBudget === true) return at(state, mailPhase(undefined), T.insufficientStorage);
      return deliver(state, phase.transaction, event.body);
    case 'bdat-chunk':
      if (phase.name !== 'bdat') return nothing(state);
      return onChunk(config, state, phase, event.chunk, event.overBudget === true);
    case 'line':
      if (phase.name !== 'mail') return nothing(state);
      return onCommand(config, state, phase.transaction, event.line);
    case 'tls-ready':
    case 'auth-succeeded':
    case 'auth-failed':
      return nothing(state);
  }
}

function deliver(state: SmtpState, transaction: Transaction, data: Buffer): Transition {
  const message: OutgoingMessage = { from: transaction.from, recipients: transaction.recipients, data };
  return {
    state: { ...state, messages: state.messages + 1, phase: { name: 'delivering', closing: false } },
    actions: [{ type: 'deliver', message }],
  };
}

function onChunk(
  config: SmtpFrontConfig,
  state: SmtpState,
  phase: Extract<SmtpPhase, { name: 'bdat' }>,
  chunk: Buffer,
  overBudget: boolean,
): Transition {
  const transaction = phase.transaction;
  // RFC 3030 §2: the chunk is read whatever the reply; only then may the server refuse it.
  if (transaction === undefined) return at(state, mailPhase(undefined), T.mailFirst);
  if (transaction.recipients.length === 0) return at(state, mailPhase(transaction), T.rcptFirst);
  if (overBudget) return at(state, mailPhase(undefined), T.insufficientStorage);
  const size = transaction.size + phase.size;
  if (!phase.keep || size > config.maxMessageSize) {
    // Too large: this message is over, the client starts again with MAIL.
    return at(state, mailPhase(undefined), T.messageTooLarge);
  }
  const chunks = [...(transaction.chunks ?? []), chunk];
  if (!phase.last) return at(state, mailPhase({ ...transaction, chunks, size }), bdatReceived(phase.size));
  return deliver(state, transaction, Buffer.concat(chunks, size));
}

function onCommand(
  config: SmtpFrontConfig,
  state: SmtpState,
  transaction: Transaction | undefined,
  line: string,
): Transition {
  const command = parseTransactionCommand(line);
  /** A reply in the same phase; `next` replaces the transaction (a reset is spelt out, not defaulted). */
  const here = (text: string, next: Transaction | undefined = transaction): Transition =>
    at(state, mailPhase(next), text);
  switch (command.kind) {
    case 'ehlo':
      // RFC 5321 §4.1.4: EHLO in the middle of a transaction resets it.
      return at(
        { ...state, heloName: command.name },
        mailPhase(undefined),
        localEhloReply(config.serverName, config.maxMessageSize),
      );
    case 'helo':
      return at({ ...state, heloName: command.name }, mailPhase(undefined), heloReply(config.serverName));
    case 'mail': {
      if (transaction !== undefined) return here(T.nestedMail);
      if (state.messages >= (config.maxMessagesPerSession ?? DEFAULT_MAX_MESSAGES))
        return closeWith(state, [T.tooManyMessages], 'limit', 'messages per session');
      const declared = command.params.find((p) => p.kind === 'size');
      if (declared !== undefined && declared.size > config.maxMessageSize) return here(T.messageTooLarge);
      return here(T.senderOk, { from: command.from, recipients: [], chunks: undefined, size: 0 });
    }
    case 'rcpt': {
      if (transaction === undefined) return here(T.mailFirst);
      const to = command.to;
      // The same mailbox twice gets one copy; the local part may be case-sensitive in theory, but
      // Exchange (and so Graph) treats addresses case-insensitively.
      const lower = to.toLowerCase();
      if (transaction.recipients.some((r) => r.toLowerCase() === lower)) return here(T.recipientOk);
      if (transaction.recipients.length >= (config.maxRecipients ?? DEFAULT_MAX_RECIPIENTS))
        return here(T.tooManyRecipients);
      return here(T.recipientOk, { ...transaction, recipients: [...transaction.recipients, to] });
    }
    case 'data':
      if (transaction === undefined) return here(T.mailFirst);
      if (transaction.chunks !== undefined) return here(T.dataAfterBdat);
      if (transaction.recipients.length === 0) return here(T.rcptFirst);
      return at(state, { name: 'data', transaction }, T.startData);
    case 'bdat': {
      const keep =
        transaction !== undefined &&
        transaction.recipients.length > 0 &&
        transaction.size + command.size <= config.maxMessageSize;
      return at(state, {
        name: 'bdat',
        transaction,
        size: command.size,
        last: command.last,
        keep,
      });
    }
    case 'rset':
      return at(state, mailPhase(undefined), REPLY.ok);
    case 'noop':
      return here(REPLY.ok);
    case 'quit':
      return closeWith(state, [REPLY.bye], 'delivered');
    case 'vrfy':
      return here(T.vrfy);
    case 'auth':
      return here(T.alreadyAuthenticated);
    case 'starttls':
      return here(T.noTlsAfterAuth);
    case 'unsupported-param':
      return here(command.dsn ? T.dsnUnsupported : T.paramUnsupported);
    case 'bad-address':
      return here(command.verb === 'MAIL' ? T.badSender : T.badRecipient);
    case 'syntax-error':
      // After an unreadable BDAT line its content follows, and there is no telling where it ends:
      // reading it as commands would run whatever the message contains.
      if (command.verb === 'BDAT')
        return closeWith(state, [transactionSyntaxError('BDAT')], 'protocol-error', 'unreadable BDAT');
      return here(transactionSyntaxError(command.verb));
    case 'not-implemented':
      return here(REPLY.notImplemented);
    case 'http':
      return closeWith(state, [REPLY.http], 'protocol-error', 'HTTP request');
    case 'unknown':
      return here(REPLY.unknownCommand);
  }
}

/**
 * The daemon's Graph sending: which way each account sends (./send-route.ts) and, per logged-in
 * account, a Graph sender whose tokens come from the token manager (the Graph resource of the same
 * grant). One throttle for the whole process, so a Retry-After Graph gave one session holds for all.
 */
import type { Logger } from 'pino';
import type { ResolvedAccount } from '../../config/types.js';
import type { GraphThrottle } from '../../graph/index.js';
import type { MessageSender, OutgoingMessage, SendOutcome } from '../../graph/types.js';
import type { TokenProvider } from '../../oauth/types.js';
import type { GrantStore } from '../../store/types.js';
import type { GraphSending } from '../shared/types.js';
import { SendRouter } from './send-route.js';

export interface GraphSendingOptions {
  store: Pick<GrantStore, 'getToken' | 'updateToken'>;
  tokens: TokenProvider;
  logger: Logger;
  /** The SMTP size limit now (`smtpMaxMessageSize`): what the front accepted, Graph is asked to send. */
  maxMessageBytes?: () => number;
  /** Tests: the whole-message deadline (default SEND_DEADLINE_MS). */
  sendDeadlineMs?: number;
  /** Each message's result and duration (src/metrics); optional. */
  metrics?: { graphMessage(result: SendOutcome['kind'], seconds: number): void };
}

/**
 * The sender module (and mailparser with it) is loaded at the first message, not at start: a daemon
 * that never sends through Graph does not carry it.
 */
let senderModule: Promise<typeof import('../../graph/index.js')> | undefined;
function loadSenderModule(): Promise<typeof import('../../graph/index.js')> {
  senderModule ??= import('../../graph/index.js');
  return senderModule;
}

/**
 * One message may take this long with Graph, all its requests together (a draft with upload sessions
 * is a dozen): the session reads nothing meanwhile, and a client's own DATA timeout is about 10 min.
 */
export const SEND_DEADLINE_MS = 5 * 60_000;

export function createGraphSending(options: GraphSendingOptions): GraphSending {
  const router = new SendRouter({ store: options.store, logger: options.logger });
  let throttle: GraphThrottle | undefined;
  const { tokens, metrics, logger } = options;
  return {
    route: (account) => router.route(account),
    switchToGraph: (account, reply) => router.switchToGraph(account, reply),
    createSender(account: ResolvedAccount): MessageSender {
      const graph = account.connection.graph;
      if (!graph) throw new Error(`connection ${account.connection.name} does not send through Graph`);
      let sender: MessageSender | undefined;
      const send = async (message: OutgoingMessage, signal: AbortSignal): Promise<SendOutcome> => {
        if (!sender) {
          let module: typeof import('../../graph/index.js');
          try {
            module = await loadSenderModule();
          } catch (err) {
            senderModule = undefined;
            const reason = err instanceof Error ? err.message : String(err);
            return { kind: 'temporary', reason: `the Graph sender could not be loaded: ${reason}` };
          }
          const { createGraphSender, GraphThrottle } = module;
          throttle ??= new GraphThrottle();
          sender = createGraphSender({
            graphUrl: graph.url,
            mailbox: account.email,
            saveToSentItems: graph.saveToSentItems,
            accessToken: async ({ forceRefresh }) =>
              (await tokens.getAccessToken(account, { resource: 'graph', forceRefresh })).token,
            throttle,
            logger: logger.child({ account: account.id }),
            ...(options.maxMessageBytes ? { maxMessageBytes: options.maxMessageBytes() } : {}),
          });
        }
        return sender.send(message, signal);
      };
      return {
        async send(message, clientSignal) {
          const started = performance.now();
          const deadline = AbortSignal.timeout(options.sendDeadlineMs ?? SEND_DEADLINE_MS);
          let outcome = await send(message, AbortSignal.any([clientSignal, deadline]));
          if (deadline.aborted && !clientSignal.aborted && outcome.kind !== 'sent') {
            outcome = {
              kind: 'temporary',
              reason: 'Microsoft Graph took too long with this message; try again later',
            };
          }
          try {
            metrics?.graphMessage(outcome.kind, (performance.now() - started) / 1000);
          } catch {
            // Counting must never change a message's reply.
          }
          return outcome;
        },
      };
    },
  };
}

/**
 * The daemon's Graph sending: which way each account sends (./send-route.ts) and, per logged-in
 * account, a Graph sender whose tokens come from the token manager (the Graph resource of the same
 * grant). One throttle for the whole process, so a Retry-After Graph gave one session holds for all.
 */
import type { Logger } from 'pino';
import type { ResolvedAccount } from '../../config/types.js';
import { createGraphSender, GraphThrottle } from '../../graph/index.js';
import type { MessageSender, SendOutcome } from '../../graph/types.js';
import type { TokenProvider } from '../../oauth/types.js';
import type { GrantStore } from '../../store/types.js';
import type { GraphSending } from '../shared/types.js';
import { SendRouter } from './send-route.js';

export interface GraphSendingOptions {
  store: Pick<GrantStore, 'getToken' | 'updateToken'>;
  tokens: TokenProvider;
  logger: Logger;
  /** Each message's result and duration (src/metrics); optional. */
  metrics?: { graphMessage(result: SendOutcome['kind'], seconds: number): void };
}

export function createGraphSending(options: GraphSendingOptions): GraphSending {
  const router = new SendRouter({ store: options.store, logger: options.logger });
  const throttle = new GraphThrottle();
  const { tokens, metrics, logger } = options;
  return {
    route: (account) => router.route(account),
    switchToGraph: (account, reply) => router.switchToGraph(account, reply),
    createSender(account: ResolvedAccount): MessageSender {
      const graph = account.connection.graph;
      if (!graph) throw new Error(`connection ${account.connection.name} does not send through Graph`);
      const sender = createGraphSender({
        graphUrl: graph.url,
        mailbox: account.email,
        saveToSentItems: graph.saveToSentItems,
        accessToken: async ({ forceRefresh }) =>
          (await tokens.getAccessToken(account, { resource: 'graph', forceRefresh })).token,
        throttle,
        logger: logger.child({ account: account.id }),
      });
      if (!metrics) return sender;
      return {
        async send(message, signal) {
          const started = performance.now();
          const outcome = await sender.send(message, signal);
          try {
            metrics.graphMessage(outcome.kind, (performance.now() - started) / 1000);
          } catch {
            // Counting must never change a message's reply.
          }
          return outcome;
        },
      };
    },
  };
}

/**
 * The SMTP login when a connection may send through Microsoft Graph. It wraps the relay login:
 *
 *   route graph  ->  a Graph token is the whole login; the session then ends the SMTP transaction
 *                    itself and hands each message to the account's Graph sender
 *   route smtp   ->  the relay login as always; with `send: auto`, Exchange's `535 5.7.139` (SMTP AUTH
 *                    off for this mailbox) switches the account to Graph and this very login goes on
 *                    through Graph, so the client sees `235` and never the refusal
 */
import type { ResolvedAccount } from '../../config/types.js';
import { isProxyError, ProxyError } from '../../errors.js';
import type { TokenProvider } from '../../oauth/types.js';
import type { UpstreamAuthOutcome, UpstreamLogin } from '../shared/login.js';
import { isLocalUpstream, type LocalUpstream } from '../shared/session.js';
import type { GraphSending } from '../shared/types.js';
import { smtpAuthDisabled, type SendRoute } from './send-route.js';
import type { SmtpUpstream } from './upstream.js';

export interface GraphLoginDeps {
  graph: GraphSending;
  tokens: TokenProvider;
}

function graphUpstream(account: ResolvedAccount, deps: GraphLoginDeps): LocalUpstream {
  const url = account.connection.graph?.url ?? '';
  let host = url;
  try {
    host = new URL(url).host;
  } catch {
    // The config checked the URL; a label must never fail a login.
  }
  return { sender: deps.graph.createSender(account), label: `graph ${host}` };
}

/** One login's upstream dialogue (a new one per login: it remembers the route it chose). */
export function graphAwareLogin(
  relay: UpstreamLogin<SmtpUpstream>,
  deps: GraphLoginDeps,
): UpstreamLogin<SmtpUpstream | LocalUpstream> {
  let route: SendRoute = 'smtp';
  return {
    async tokenResource(account) {
      route = account.connection.graph ? await deps.graph.route(account) : 'smtp';
      return route === 'graph' ? 'graph' : 'mail';
    },

    async connect(account, signal) {
      if (route === 'graph') return graphUpstream(account, deps);
      return relay.connect(account, signal);
    },

    async authenticate(
      upstream,
      account,
      accessToken,
    ): Promise<UpstreamAuthOutcome<SmtpUpstream | LocalUpstream>> {
      // Holding a Graph token is the whole login: Graph itself is asked only when a message is sent.
      if (isLocalUpstream(upstream)) return { ok: true };
      try {
        return await relay.authenticate(upstream, account, accessToken);
      } catch (err) {
        if (!isProxyError(err, 'upstream-rejected')) throw err;
        const reply = err.detail ?? err.message;
        if (!smtpAuthDisabled(reply)) throw err;
        if (account.connection.send !== 'auto') {
          throw new ProxyError(
            'upstream-rejected',
            `${err.message} (SMTP AUTH is off for this mailbox: set send: auto or send: graph on connection ` +
              `${account.connection.name} to send through Microsoft Graph)`,
            { cause: err, detail: reply },
          );
        }
        relay.close(upstream);
        await deps.graph.switchToGraph(account, reply);
        // Throws needs-consent when the grant lacks the Graph scope: the client is told to consent again.
        await deps.tokens.getAccessToken(account, { resource: 'graph' });
        return { ok: true, upstream: graphUpstream(account, deps) };
      }
    },

    close(upstream) {
      if (!isLocalUpstream(upstream)) relay.close(upstream);
    },
  };
}

/**
 * The daemon's Graph sending (src/proxy/smtp/graph-sending.ts) against the fake Graph: a sender per
 * account with tokens from the token provider, the whole-message deadline, and the metrics.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ConnectionConfig, ResolvedAccount } from '../../../src/config/types.js';
import type { SendOutcome } from '../../../src/graph/types.js';
import { silentLogger } from '../../../src/log.js';
import type { TokenProvider } from '../../../src/oauth/types.js';
import { createGraphSending } from '../../../src/proxy/smtp/graph-sending.js';
import { startFakeGraph, type FakeGraph } from '../../helpers/fake-graph.js';

let graph: FakeGraph | undefined;
afterEach(async () => {
  await graph?.close();
  graph = undefined;
});

const MAILBOX = 'scanner@contoso.com';
const MIME = Buffer.from(`From: ${MAILBOX}\r\nTo: bob@example.org\r\nSubject: s\r\n\r\nhello\r\n`);

async function setup(sendDeadlineMs?: number) {
  graph = await startFakeGraph({
    verifyToken: (t) =>
      t === 'graph-token' ? { email: MAILBOX, scopes: ['https://graph.microsoft.com/Mail.Send'] } : undefined,
  });
  const connection = {
    name: 'm365',
    provider: 'microsoft',
    send: 'graph',
    graph: { url: graph.url, scopes: ['https://graph.microsoft.com/Mail.Send'], saveToSentItems: true },
  } as unknown as ConnectionConfig;
  const account: ResolvedAccount = {
    id: MAILBOX,
    username: MAILBOX,
    email: MAILBOX,
    connection,
    entry: MAILBOX,
  };
  const asked: unknown[] = [];
  const tokens: TokenProvider = {
    async getAccessToken(_a, o) {
      asked.push(o);
      return { token: 'graph-token', expiresAt: Date.now() + 3600_000 };
    },
    invalidate: () => undefined,
  };
  const timed: Array<[SendOutcome['kind'], number]> = [];
  const sending = createGraphSending({
    store: { getToken: async () => undefined, updateToken: async () => undefined },
    tokens,
    logger: silentLogger(),
    metrics: { graphMessage: (result, seconds) => void timed.push([result, seconds]) },
    ...(sendDeadlineMs === undefined ? {} : { sendDeadlineMs }),
  });
  return { sender: sending.createSender(account), asked, timed };
}

describe('the daemon’s Graph sending', () => {
  it('sends with a Graph token of the account and times the message', async () => {
    const { sender, asked, timed } = await setup();
    const outcome = await sender.send(
      { from: MAILBOX, recipients: ['bob@example.org'], data: MIME },
      new AbortController().signal,
    );
    expect(outcome).toEqual({ kind: 'sent' });
    expect(asked).toEqual([{ resource: 'graph', forceRefresh: false }]);
    expect(graph?.delivered[0]?.mime?.equals(MIME)).toBe(true);
    expect(timed.map(([k]) => k)).toEqual(['sent']);
  });

  it('a message Graph sits on past the deadline gets a temporary failure', async () => {
    const { sender, timed } = await setup(300);
    graph!.setDelay(3_000);
    const started = Date.now();
    const outcome = await sender.send(
      { from: MAILBOX, recipients: ['bob@example.org'], data: MIME },
      new AbortController().signal,
    );
    expect(outcome).toEqual({
      kind: 'temporary',
      reason: 'Microsoft Graph took too long with this message; try again later',
    });
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(timed.map(([k]) => k)).toEqual(['temporary']);
  });
});

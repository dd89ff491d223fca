/**
 * Fifty legacy clients log in at the same moment to one account whose access token has expired: the
 * proxy must make exactly one token request (one refresh per account in flight), and every client must
 * end up in a working upstream session.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireDovecot } from '../helpers/dovecot.js';
import { imapLogin, printLogsOnFailure, startWorld, waitUntil, worldLogs, type World } from './support.js';

const USER = { email: 'busy@example.com', password: 'busy-pw', accessTokenTtlSeconds: 1 };
const CLIENTS = 50;

describe.runIf(requireDovecot())('concurrent logins through the proxy binary', () => {
  let world: World;
  beforeAll(async () => {
    world = await startWorld({
      accounts: [USER],
      listen: { imap: ['none'], smtp: [] },
    });
  });
  afterAll(async () => world?.stop());
  printLogsOnFailure(worldLogs(() => world));

  it(`${CLIENTS} clients at once with an expired token cause exactly one token request`, async () => {
    await waitUntil(world.grants.get(USER.email)!.expiresAt + 50);
    const tokenRequests = world.auth.counts.token;
    const loginsBefore = world.dovecot.logins().length;

    const replies = await Promise.all(
      Array.from({ length: CLIENTS }, () =>
        imapLogin(world.proxy.ports.imap.none!, USER.email, USER.password),
      ),
    );

    expect(replies.filter((r) => !/^a1 OK/.test(r))).toEqual([]);
    expect(world.auth.counts.token - tokenRequests).toBe(1);
    const logins = await world.dovecot.waitForLogins({ count: CLIENTS, since: loginsBefore });
    expect(logins).toHaveLength(CLIENTS);
    expect(logins.every((l) => l.user === USER.email && l.tls)).toBe(true);
  }, 120_000);
});

/**
 * What every Store implementation must do, as one suite: the embedded SQLite store and the
 * PostgreSQL store run the same tests. `fresh` starts an empty store before each test; `open` gives
 * a new handle on it each time it is called (two handles stand for two processes or two instances).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Store, TokenRecord } from '../../src/store/types.js';

export function record(accountId: string, overrides: Partial<TokenRecord> = {}): TokenRecord {
  return {
    accountId,
    connection: 'google',
    refreshToken: `rt-${accountId}`,
    accessToken: `at-${accountId}`,
    accessTokenExpiresAt: 1_900_000_000_000,
    scopes: ['https://mail.google.com/'],
    identity: accountId,
    displayName: 'Alice Example',
    state: 'active',
    lastRefreshAt: 1_800_000_000_000,
    lastError: 'none yet',
    updatedAt: 1_800_000_000_000,
    ...overrides,
  };
}

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface StoreUnderTest {
  fresh(): void | Promise<void>;
  open(): Promise<Store>;
}

export function storeContract(name: string, { fresh, open }: StoreUnderTest): void {
  describe(`${name}: the Store contract`, () => {
    const opened: Store[] = [];
    beforeEach(() => fresh());
    const handle = async (): Promise<Store> => {
      const s = await open();
      opened.push(s);
      return s;
    };
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    it('round-trips a grant with every field, lists it, summarises it without secrets, deletes it', async () => {
      const a = await handle();
      const every = { inDoubtUntil: 1_900_000_000_002, graphSendUntil: 1_900_000_000_003 };
      await a.putToken(record('alice@example.com', every));
      await a.putToken(record('bob@example.com', { refreshToken: undefined, state: 'needs-consent' }));
      const b = await handle();
      expect(await b.getToken('alice@example.com')).toEqual(record('alice@example.com', every));
      expect((await b.listTokens()).map((r) => r.accountId)).toEqual([
        'alice@example.com',
        'bob@example.com',
      ]);
      const summaries = await b.listTokenSummaries();
      expect(JSON.stringify(summaries)).not.toContain('rt-');
      expect(JSON.stringify(summaries)).not.toContain('at-');
      expect(summaries.map((s) => [s.accountId, s.hasRefreshToken, s.state])).toEqual([
        ['alice@example.com', true, 'active'],
        ['bob@example.com', false, 'needs-consent'],
      ]);
      expect(await b.deleteToken('bob@example.com')).toBe(true);
      expect(await b.deleteToken('bob@example.com')).toBe(false);
      expect(await a.getToken('bob@example.com')).toBeUndefined();
      await expect(a.ping()).resolves.toBeUndefined();
    });

    it('updateToken is one transaction: concurrent increments from two handles lose none', async () => {
      const a = await handle();
      const b = await handle();
      await a.putToken(record('count@example.com', { lastError: '0' }));
      const bump = (s: Store) =>
        s.updateToken(
          'count@example.com',
          (cur) => cur && { ...cur, lastError: String(Number(cur.lastError) + 1) },
        );
      await Promise.all(Array.from({ length: 20 }, (_, i) => bump(i % 2 ? a : b)));
      expect((await a.getToken('count@example.com'))?.lastError).toBe('20');
      // Returning undefined writes nothing and answers the current record.
      expect(await b.updateToken('count@example.com', () => undefined)).toMatchObject({ lastError: '20' });
      expect(await b.updateToken('nobody@example.com', (cur) => cur)).toBeUndefined();
    });

    it('a compare-and-set on the refresh token that was sent: the loser keeps the winner’s', async () => {
      const a = await handle();
      await a.putToken(record('cas@example.com', { refreshToken: 'rt-0' }));
      const commit = (s: Store, sent: string, rotated: string) =>
        s.updateToken('cas@example.com', (cur) =>
          cur && cur.refreshToken === sent ? { ...cur, refreshToken: rotated } : undefined,
        );
      expect((await commit(a, 'rt-0', 'rt-1'))?.refreshToken).toBe('rt-1');
      const b = await handle();
      expect((await commit(b, 'rt-0', 'rt-2'))?.refreshToken).toBe('rt-1');
      expect((await a.getToken('cas@example.com'))?.refreshToken).toBe('rt-1');
    });

    it('a refresh lease has one holder; the holder may renew; another takes over only after it runs out', async () => {
      const a = await handle();
      const b = await handle();
      await a.putToken(record('lease@example.com'));
      expect(await a.acquireRefreshLease('lease@example.com', 'A', 60_000)).toEqual({ acquired: true });
      const busy = await b.acquireRefreshLease('lease@example.com', 'B', 60_000);
      expect(busy).toMatchObject({ acquired: false, holder: 'A' });
      expect(busy.acquired === false && busy.remainingMs > 50_000 && busy.remainingMs <= 60_000).toBe(true);
      expect(await a.acquireRefreshLease('lease@example.com', 'A', 60_000)).toEqual({ acquired: true });
      // Released: the next holder takes it without a takeover.
      await a.releaseRefreshLease('lease@example.com', 'A');
      expect(await b.acquireRefreshLease('lease@example.com', 'B', 200)).toEqual({ acquired: true });
      // A release by someone else changes nothing.
      await a.releaseRefreshLease('lease@example.com', 'A');
      expect(await a.acquireRefreshLease('lease@example.com', 'A', 60_000)).toMatchObject({
        acquired: false,
      });
      // B never releases (it died): after its lease ran out, A takes over and is told so.
      await new Promise((r) => setTimeout(r, 300));
      expect(await a.acquireRefreshLease('lease@example.com', 'A', 60_000)).toEqual({
        acquired: true,
        tookOver: 'B',
      });
      // Leases are per account.
      expect(await b.acquireRefreshLease('other@example.com', 'B', 60_000)).toEqual({ acquired: true });
    });

    it('watchGrants hears changes made through this handle and through another one', async () => {
      const a = await handle();
      const b = await handle();
      const heard: string[] = [];
      const stop = a.watchGrants((id) => heard.push(id));
      // The very first watch may take a moment before the store can tell (a database connects its
      // listener): written again until heard, so what follows starts from a listening store.
      for (let i = 0; i < 50 && !heard.includes('warm@example.com'); i++) {
        await b.putToken(record('warm@example.com'));
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(heard).toContain('warm@example.com');
      await a.putToken(record('own@example.com'));
      await until(() => heard.includes('own@example.com'));
      await b.putToken(record('other@example.com'));
      await until(() => heard.includes('other@example.com'));
      await b.updateToken(
        'other@example.com',
        (cur) => cur && { ...cur, state: 'failing', updatedAt: cur.updatedAt + 1 },
      );
      await until(() => heard.filter((id) => id === 'other@example.com').length >= 2);
      stop();
      const before = heard.length;
      await b.putToken(record('late@example.com'));
      await new Promise((r) => setTimeout(r, 700));
      expect(heard.length).toBe(before);

      // Watching again (as every refresh waiter does, briefly): a change made at once is heard, each time.
      for (let round = 0; round < 5; round++) {
        const again: string[] = [];
        const stopAgain = a.watchGrants((id) => again.push(id));
        await b.putToken(record(`again${round}@example.com`));
        await until(() => again.includes(`again${round}@example.com`), 2_000);
        stopAgain();
      }
    });

    it('app passwords: add, list per account and all, touch, remove by id or label', async () => {
      const a = await handle();
      const b = await handle();
      await a.addAppPassword({
        id: 'aaaa',
        accountId: 'alice@example.com',
        label: 'phone',
        hash: 'h1',
        createdAt: 1,
      });
      await a.addAppPassword({
        id: 'bbbb',
        accountId: 'alice@example.com',
        label: 'laptop',
        hash: 'h2',
        createdAt: 2,
      });
      await a.addAppPassword({
        id: 'cccc',
        accountId: 'bob@example.com',
        label: 'phone',
        hash: 'h3',
        createdAt: 3,
      });
      expect((await b.listAppPasswords('alice@example.com')).map((p) => p.id)).toEqual(['aaaa', 'bbbb']);
      expect((await b.listAppPasswords()).map((p) => p.id)).toEqual(['aaaa', 'bbbb', 'cccc']);
      await b.touchAppPassword('aaaa', 99);
      expect((await a.listAppPasswords('alice@example.com'))[0]).toMatchObject({ lastUsedAt: 99 });
      // A revocation on one handle is what the other reads at its next login.
      expect(await b.removeAppPassword('alice@example.com', 'laptop')).toBe(true);
      expect(await b.removeAppPassword('alice@example.com', 'aaaa')).toBe(true);
      expect(await b.removeAppPassword('alice@example.com', 'cccc')).toBe(false);
      expect(await a.listAppPasswords('alice@example.com')).toEqual([]);
    });

    it('consent links are single use across handles', async () => {
      const a = await handle();
      const b = await handle();
      const link = {
        tokenHash: 'f'.repeat(64),
        accountId: 'alice@example.com',
        username: 'alice@example.com',
        createdAt: 1,
        expiresAt: 2,
      };
      await a.addConsentLink(link);
      expect(await b.getConsentLink(link.tokenHash)).toEqual(link);
      const spent = await Promise.all([
        a.useConsentLink(link.tokenHash, 5),
        b.useConsentLink(link.tokenHash, 6),
      ]);
      expect(spent.filter(Boolean)).toHaveLength(1);
      expect((await a.getConsentLink(link.tokenHash))?.usedAt).toBeGreaterThanOrEqual(5);
      expect(await a.getConsentLink('0'.repeat(64))).toBeUndefined();
    });

    it('a consent in progress is stored sealed, taken once across handles, and capped per link and in all', async () => {
      const [a, b] = [await handle(), await handle()];
      const pending = (state: string, linkHash: string, expiresAt = 10_000) => ({
        state,
        linkHash,
        accountId: 'alice@example.com',
        username: 'alice@example.com',
        codeVerifier: `verifier-${state}`,
        redirectUri: 'https://proxy.example.com/oauth/callback',
        browser: 'browser-1',
        expiresAt,
      });
      const limits = { now: 1_000, maxPerLink: 2, maxTotal: 4 };
      await a.putPendingConsent(pending('s1', 'link-1'), limits);
      expect(await b.getPendingConsent('s1', 1_000)).toEqual(pending('s1', 'link-1'));
      expect(await b.getPendingConsent('s1', 10_000)).toBeUndefined();
      // Taken once: the second take, on either handle, finds nothing.
      const takes = await Promise.all([a.takePendingConsent('s1', 1_000), b.takePendingConsent('s1', 1_000)]);
      expect(takes.filter(Boolean)).toEqual([pending('s1', 'link-1')]);
      expect(await a.getPendingConsent('s1', 1_000)).toBeUndefined();

      // Per link: the link's oldest goes; other links keep theirs. In all: the oldest goes.
      await a.putPendingConsent(pending('s2', 'link-1'), limits);
      await b.putPendingConsent(pending('s3', 'link-1'), limits);
      await a.putPendingConsent(pending('s4', 'link-1'), limits);
      expect(await a.getPendingConsent('s2', 1_000)).toBeUndefined();
      expect(await a.getPendingConsent('s3', 1_000)).toBeDefined();
      for (const s of ['t1', 't2', 't3']) await b.putPendingConsent(pending(s, `link-${s}`), limits);
      const live = [];
      for (const s of ['s3', 's4', 't1', 't2', 't3']) if (await a.getPendingConsent(s, 1_000)) live.push(s);
      expect(live).toEqual(['s4', 't1', 't2', 't3']);
      // Expired ones are dropped when the next one is stored.
      await a.putPendingConsent(pending('late', 'link-9'), { ...limits, now: 20_000 });
      expect(await a.takePendingConsent('t3', 1_000)).toBeUndefined();

      // A finished consent is remembered under its state, and is not a pending one.
      await b.putCompletedConsent(
        { state: 'done', accountId: 'alice@example.com', email: 'alice@example.com', expiresAt: 5_000 },
        1_000,
      );
      expect(await a.getCompletedConsent('done', 1_000)).toMatchObject({ email: 'alice@example.com' });
      expect(await a.getPendingConsent('done', 1_000)).toBeUndefined();
      expect(await a.takePendingConsent('done', 1_000)).toBeUndefined();
      expect(await a.getCompletedConsent('done', 5_000)).toBeUndefined();
    });

    it('keys derived for CSRF and sessions are the same on every handle and differ by purpose', async () => {
      const [a, b] = [await handle(), await handle()];
      expect(a.deriveKey('csrf').equals(b.deriveKey('csrf'))).toBe(true);
      expect(a.deriveKey('csrf')).toHaveLength(32);
      expect(a.deriveKey('csrf').equals(a.deriveKey('admin'))).toBe(false);
    });
  });
}

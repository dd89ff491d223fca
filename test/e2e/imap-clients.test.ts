/**
 * Real IMAP clients (curl, imapflow) through the running proxy binary to a real Dovecot that validates
 * every XOAUTH2 token with the fake authorization server.
 */
import { EventEmitter } from 'node:events';
import { ImapFlow, type ImapFlowOptions } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getTestCerts } from '../helpers/certs.js';
import { requireDovecot } from '../helpers/dovecot.js';
import type { LocalTls } from '../helpers/proxy-process.js';
import {
  bigMessage,
  printLogsOnFailure,
  run,
  sha256,
  startWorld,
  testMessage,
  worldLogs,
  type World,
} from './support.js';

const ALICE = { email: 'alice@example.com', password: 'Alice pw ü 1' };
// bob's connection reaches Dovecot with STARTTLS instead of implicit TLS.
const BOB = { email: 'bob@example.com', password: 'bob-secret', connection: 'e2e-alt' as const };

describe.runIf(requireDovecot(['curl']))('IMAP clients through the proxy to Dovecot', () => {
  let world: World;
  /** The message each user's curl test looks for in INBOX (found by SEARCH, so other INBOX tests don't matter). */
  const inboxMessage: Record<string, string> = {};

  beforeAll(async () => {
    world = await startWorld({
      accounts: [ALICE, BOB],
      listen: { imap: ['none', 'starttls', 'implicit'], smtp: [] },
    });
    for (const user of [ALICE.email, BOB.email]) {
      inboxMessage[user] = testMessage({ to: user, subject: `curl fetch for ${user}` });
      world.dovecot.deliver(user, inboxMessage[user]!);
    }
  });
  afterAll(async () => world?.stop());
  printLogsOnFailure(worldLogs(() => world));

  function curlArgs(tls: LocalTls, user: { email: string; password: string }, path: string): string[] {
    const port = world.proxy.ports.imap[tls]!;
    const scheme = tls === 'implicit' ? 'imaps' : 'imap';
    const args = ['--silent', '--show-error', '--max-time', '30', '--user', `${user.email}:${user.password}`];
    if (tls !== 'none') args.push('--cacert', getTestCerts().caFile);
    if (tls === 'starttls') args.push('--ssl-reqd');
    return [...args, `${scheme}://127.0.0.1:${port}/${path}`];
  }

  /** curl SEARCHes INBOX for the user's test message, then fetches it by UID; returns the bytes. */
  async function curlFetchInbox(tls: LocalTls, user: { email: string; password: string }): Promise<Buffer> {
    const search = await run('curl', [
      ...curlArgs(tls, user, 'INBOX'),
      '--request',
      'UID SEARCH SUBJECT "curl fetch"',
    ]);
    expect(search.stderr).toBe('');
    const uids = /^\* SEARCH ([\d ]+)\r$/m.exec(search.stdout.toString('latin1'))?.[1]?.split(' ') ?? [];
    expect(uids).toHaveLength(1);
    const fetched = await run('curl', curlArgs(tls, user, `INBOX/;UID=${uids[0]}`));
    expect(fetched.stderr).toBe('');
    expect(fetched.code).toBe(0);
    return fetched.stdout;
  }

  it.each(['none', 'starttls', 'implicit'] as const)(
    'curl lists mailboxes and fetches from INBOX byte-exact (local %s)',
    async (tls) => {
      const list = await run('curl', curlArgs(tls, ALICE, ''));
      expect(list.stderr).toBe('');
      expect(list.code).toBe(0);
      expect(list.stdout.toString('utf8')).toMatch(/^\* LIST \(.*\) "\." INBOX\r$/m);

      const fetched = await curlFetchInbox(tls, ALICE);
      expect(fetched.equals(Buffer.from(inboxMessage[ALICE.email]!, 'utf8'))).toBe(true);
    },
  );

  it('curl through an account whose upstream uses STARTTLS: Dovecot saw a TLS login on its STARTTLS port', async () => {
    const before = world.dovecot.logins().length;
    const fetched = await curlFetchInbox('none', BOB);
    expect(fetched.equals(Buffer.from(inboxMessage[BOB.email]!, 'utf8'))).toBe(true);
    // Two curl runs (SEARCH, then FETCH): two upstream logins, both over TLS on the STARTTLS port.
    const logins = await world.dovecot.waitForLogins({ count: 2, since: before });
    expect(logins).toHaveLength(2);
    for (const login of logins) {
      expect(login).toMatchObject({
        user: BOB.email,
        method: 'XOAUTH2',
        localPort: world.dovecot.ports.imap,
        tls: true,
      });
    }
  });

  it('wrong password: curl fails and Dovecot never sees a login', async () => {
    const before = world.dovecot.logins().length;
    const r = await run('curl', curlArgs('none', { ...ALICE, password: 'wrong' }, ''));
    expect(r.code).not.toBe(0);
    expect(world.dovecot.logins().length).toBe(before);
  });

  /** imapflow against the proxy, recording the commands it sent and watching what the server said. */
  function imapflow(
    user: { email: string; password: string },
    loginMethod: 'LOGIN' | 'AUTH=PLAIN',
    tls: LocalTls = 'none',
  ): { client: ImapFlow; sent: string[]; serverSays(pattern: RegExp, timeoutMs?: number): Promise<string> } {
    const sent: string[] = [];
    const server = new EventEmitter();
    const record = (entry: unknown): void => {
      const e = entry as { src?: string; msg?: string };
      if (!e || typeof e.msg !== 'string') return;
      if (e.src === 'c') sent.push(e.msg);
      if (e.src === 's') server.emit('line', e.msg);
    };
    const noop = (): void => undefined;
    const options: ImapFlowOptions = {
      host: '127.0.0.1',
      port: world.proxy.ports.imap[tls]!,
      secure: tls === 'implicit',
      doSTARTTLS: tls === 'starttls',
      tls: { ca: world.proxy.localCaPem, servername: 'localhost' },
      auth: { user: user.email, pass: user.password, loginMethod },
      logger: { debug: record, info: noop, warn: noop, error: noop },
      disableAutoIdle: true,
    };
    const serverSays = (pattern: RegExp, timeoutMs = 20_000): Promise<string> =>
      new Promise((resolve, reject) => {
        const onLine = (line: string): void => {
          if (!pattern.test(line)) return;
          clearTimeout(timer);
          server.off('line', onLine);
          resolve(line);
        };
        const timer = setTimeout(() => {
          server.off('line', onLine);
          reject(new Error(`the server never said ${pattern}`));
        }, timeoutMs);
        server.on('line', onLine);
      });
    return { client: new ImapFlow(options), sent, serverSays };
  }

  it.each([
    ['LOGIN', 'none'],
    ['AUTH=PLAIN', 'starttls'],
    ['AUTH=PLAIN', 'implicit'],
  ] as const)('imapflow with %s (local %s) fetches byte-exact', async (loginMethod, tls) => {
    const raw = testMessage({ to: ALICE.email, subject: `imapflow ${loginMethod} ${tls}` });
    const box = `Flow${loginMethod.replace(/\W/g, '')}${tls}`;
    world.dovecot.deliver(ALICE.email, raw, box);
    const { client, sent } = imapflow(ALICE, loginMethod, tls);
    await client.connect();
    try {
      const lock = await client.getMailboxLock(box);
      try {
        const msg = await client.fetchOne('1', { source: true });
        expect(msg && msg.source?.equals(Buffer.from(raw, 'utf8'))).toBe(true);
      } finally {
        lock.release();
      }
    } finally {
      await client.logout();
    }
    const authLine = sent.find((line) => / (LOGIN|AUTHENTICATE) /i.test(line));
    expect(authLine).toMatch(loginMethod === 'LOGIN' ? /^\S+ LOGIN /i : /^\S+ AUTHENTICATE PLAIN/i);
  });

  it('imapflow IDLE sees a message that arrives meanwhile', async () => {
    const { client, serverSays } = imapflow(ALICE, 'LOGIN');
    await client.connect();
    try {
      const lock = await client.getMailboxLock('INBOX');
      try {
        const startCount = client.mailbox ? client.mailbox.exists : 0;
        const arrived = new Promise<number>((resolve) => {
          client.on('exists', (info: { count: number }) => resolve(info.count));
        });
        // Dovecot's "+ idling" continuation: from here on a new message can only be reported by IDLE.
        const idleAccepted = serverSays(/^\+ /);
        const idling = client.idle();
        await idleAccepted;
        world.dovecot.deliver(ALICE.email, testMessage({ to: ALICE.email, subject: 'arrives during IDLE' }));
        const count = await Promise.race([
          arrived,
          new Promise<number>((_, reject) =>
            setTimeout(() => reject(new Error('no EXISTS during IDLE')), 20_000),
          ),
        ]);
        expect(count).toBe(startCount + 1);
        await client.noop(); // ends IDLE
        await idling;
      } finally {
        lock.release();
      }
    } finally {
      await client.logout();
    }
  });

  it('a 20 MB message comes through intact', async () => {
    const raw = bigMessage(ALICE.email, 'twenty megabytes', 20 * 1024 * 1024);
    world.dovecot.deliver(ALICE.email, raw, 'Big');
    const { client } = imapflow(ALICE, 'LOGIN');
    await client.connect();
    try {
      const lock = await client.getMailboxLock('Big');
      try {
        const msg = await client.fetchOne('1', { source: true });
        expect(msg && msg.source?.length).toBe(raw.length);
        expect(sha256(msg && msg.source ? msg.source : Buffer.alloc(0))).toBe(sha256(raw));
      } finally {
        lock.release();
      }
    } finally {
      await client.logout();
    }
  }, 120_000);

  it('a 1,000-message folder comes through intact', async () => {
    const expected = new Map<string, string>();
    for (let i = 0; i < 1000; i++) {
      const raw = testMessage({
        to: ALICE.email,
        subject: `bulk ${i}`,
        body: `message number ${i}\r\n${'x'.repeat(i % 97)}`,
      });
      expected.set(sha256(raw), raw);
      world.dovecot.deliver(ALICE.email, raw, 'Thousand');
    }
    const { client } = imapflow(ALICE, 'AUTH=PLAIN');
    await client.connect();
    try {
      const lock = await client.getMailboxLock('Thousand');
      try {
        expect(client.mailbox && client.mailbox.exists).toBe(1000);
        const seen = new Set<string>();
        for await (const msg of client.fetch('1:*', { source: true })) {
          const hash = sha256(msg.source ?? Buffer.alloc(0));
          expect(expected.has(hash)).toBe(true);
          seen.add(hash);
        }
        expect(seen.size).toBe(1000);
      } finally {
        lock.release();
      }
    } finally {
      await client.logout();
    }
  }, 120_000);
});

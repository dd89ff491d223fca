/**
 * The IMAP check's main path against a server that answers STATUS (every IMAP4rev1 server must; the
 * shared fake does not, so it covers only the EXAMINE fallback): a minimal scripted IMAP server with
 * implicit TLS, XOAUTH2 only, SASL-IR.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TLSSocket, createSecureContext } from 'node:tls';
import { pino } from 'pino';
import { afterEach, expect, it } from 'vitest';
import { runChecks } from '../../../src/check/index.js';
import { DEFAULTS } from '../../../src/config/defaults.js';
import type { ResolvedAccount } from '../../../src/config/types.js';
import { storeGrant } from '../../../src/oauth/grant-record.js';
import { openStore } from '../../../src/store/index.js';
import { TokenManager } from '../../../src/oauth/token-manager.js';
import { getTestCerts } from '../../helpers/certs.js';
import { fakeConnection, startFakeAuthServer } from '../../helpers/fake-auth-server.js';

const EMAIL = 'carol@example.com';
const CAPS = 'IMAP4rev1 SASL-IR AUTH=XOAUTH2 ID';

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn();
  cleanup = [];
});

function startStatusServer(checkToken: (t: string) => string | undefined): Promise<{
  server: Server;
  port: number;
  commands: string[];
}> {
  const certs = getTestCerts();
  const secureContext = createSecureContext({ cert: certs.certPem, key: certs.keyPem });
  const commands: string[] = [];
  const server = createServer((raw) => {
    const socket = new TLSSocket(raw, { isServer: true, secureContext });
    socket.on('error', () => undefined);
    let buffer = '';
    let user: string | undefined;
    socket.once('secure', () => socket.write(`* OK [CAPABILITY ${CAPS}] ready\r\n`));
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let lf: number;
      while ((lf = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, lf).replace(/\r$/, '');
        buffer = buffer.slice(lf + 1);
        const [tag, verb = '', ...args] = line.split(' ');
        const name = verb.toUpperCase();
        commands.push(
          name === 'AUTHENTICATE' ? `AUTHENTICATE ${args[0]}` : `${name} ${args.join(' ')}`.trim(),
        );
        if (name === 'CAPABILITY')
          socket.write(`* CAPABILITY ${user ? 'IMAP4rev1 ID' : CAPS}\r\n${tag} OK done\r\n`);
        else if (name === 'ID') socket.write(`* ID NIL\r\n${tag} OK done\r\n`);
        else if (name === 'AUTHENTICATE' && args[0] === 'XOAUTH2' && args[1]) {
          const fields = Buffer.from(args[1], 'base64').toString('utf8').split('\x01');
          const who = fields[0]?.replace(/^user=/, '');
          const token = fields.find((f) => f.startsWith('auth=Bearer '))?.slice(12) ?? '';
          if (who && checkToken(token) === who) {
            user = who;
            socket.write(`${tag} OK [CAPABILITY IMAP4rev1 ID QUOTA] authenticated\r\n`);
          } else socket.write(`${tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n`);
        } else if (!user) socket.write(`${tag} BAD not yet\r\n`);
        else if (name === 'NAMESPACE') socket.write(`* NAMESPACE (("" "/")) NIL NIL\r\n${tag} OK done\r\n`);
        else if (name === 'STATUS') socket.write(`* STATUS INBOX (MESSAGES 4711)\r\n${tag} OK done\r\n`);
        else if (name === 'LOGOUT') {
          socket.write(`* BYE bye\r\n${tag} OK done\r\n`);
          socket.end();
        } else socket.write(`${tag} BAD unexpected\r\n`);
      }
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as AddressInfo).port, commands }),
    ),
  );
}

it('reports the INBOX count from STATUS, the XOAUTH2 mechanism and the post-login capabilities', async () => {
  const auth = await startFakeAuthServer();
  cleanup.push(() => auth.close());
  const imap = await startStatusServer((t) => auth.checkAccessToken(t));
  cleanup.push(() => new Promise<void>((resolve) => imap.server.close(() => resolve())));
  const connection = fakeConnection(auth, {
    imap: { host: '127.0.0.1', port: imap.port, tls: 'implicit' },
    ca: getTestCerts().caPem,
  });
  const dir = mkdtempSync(join(tmpdir(), 'check-status-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openStore({ path: join(dir, 'tokens.db'), keyFile: join(dir, 'key') }, { env: {} });
  cleanup.push(() => store.close());
  const account: ResolvedAccount = { id: EMAIL, username: EMAIL, email: EMAIL, connection, entry: EMAIL };
  const grant = auth.issueGrant(EMAIL);
  await storeGrant(store, account, { ...grant, scopes: connection.scopes }, { email: EMAIL });
  const tokens = new TokenManager({
    config: {
      settings: DEFAULTS.settings,
      accounts: [{ username: EMAIL, connection: 'fake' }],
      connections: new Map([['fake', connection]]),
    },
    store,
    logger: pino({ level: 'silent' }),
  });
  const [result] = await runChecks({ account, tokens, protocols: ['imap'], timeoutMs: 10_000 });
  expect(result).toMatchObject({
    protocol: 'imap',
    ok: true,
    mechanism: 'XOAUTH2',
    refreshed: false,
    imap: { inboxMessages: 4711, inboxVia: 'STATUS', capabilities: ['IMAP4rev1', 'ID', 'QUOTA'] },
  });
  expect(imap.commands).toContain('STATUS INBOX (MESSAGES)');
  expect(imap.commands.some((c) => /^(EXAMINE|SELECT)/.test(c))).toBe(false);
});

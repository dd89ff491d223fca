/**
 * What the proxy advertises before login is what the upstream (a real Dovecot) supports: the binary
 * probes Dovecot at start, so EHLO offers Dovecot submission's CHUNKING and a BDAT transaction goes
 * through the proxy to the sink byte for byte; CAPA offers Dovecot's UIDL and PIPELINING and UIDL
 * works after login.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { hashPassword } from '../../src/credentials/password.js';
import { requireDovecot } from '../helpers/dovecot.js';
import { RawPop3Client } from '../integration/pop3/raw-client.js';
import {
  LineClient,
  printLogsOnFailure,
  startWorld,
  testMessage,
  waitForOutput,
  worldLogs,
  type World,
} from './support.js';

const ALICE = { email: 'alice@example.com', password: 'alice caps ü' };

/** Asks until `ok` holds for the reply: the start-up probe runs in the background, never awaited. */
async function eventually<T>(ask: () => Promise<T>, ok: (value: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await ask();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe.runIf(requireDovecot([], { pop3: true }))('upstream capabilities before login (Dovecot)', () => {
  let world: World;
  beforeAll(async () => {
    world = await startWorld({
      pop3: true,
      accounts: [ALICE],
      listen: { imap: [], smtp: ['none'], pop3: ['none'] },
    });
  });
  afterAll(async () => world?.stop());
  printLogsOnFailure(worldLogs(() => world));

  async function ehlo(): Promise<string[]> {
    const c = await LineClient.open({ host: '127.0.0.1', port: world.proxy.ports.smtp.none! });
    try {
      await c.readUntil(/^220 /);
      c.send('EHLO caps.e2e.test');
      return (await c.readUntil(/^250 /)).map((l) => l.slice(4));
    } finally {
      c.close();
    }
  }

  it('EHLO offers CHUNKING before login, and a BDAT transaction reaches the sink byte for byte', async () => {
    const keywords = await eventually(ehlo, (k) => k.includes('CHUNKING'), 'EHLO without CHUNKING');
    expect(keywords).toEqual(expect.arrayContaining(['PIPELINING', '8BITMIME', 'AUTH PLAIN LOGIN']));
    // Dovecot's own AUTH line never reaches the client, only ours.
    expect(keywords.filter((k) => k.startsWith('AUTH'))).toEqual(['AUTH PLAIN LOGIN']);
    expect(keywords.some((k) => k.startsWith('BURL'))).toBe(false);

    const raw = testMessage({
      from: ALICE.email,
      to: 'carol@example.org',
      subject: 'BDAT through the proxy',
    });
    const bytes = Buffer.from(raw, 'utf8');
    const half = Math.floor(bytes.length / 2);
    const before = world.sink.messages.length;
    const c = await LineClient.open({ host: '127.0.0.1', port: world.proxy.ports.smtp.none! });
    try {
      await c.readUntil(/^220 /);
      c.send('EHLO caps.e2e.test');
      await c.readUntil(/^250 /);
      c.send(`AUTH PLAIN ${Buffer.from(`\0${ALICE.email}\0${ALICE.password}`, 'utf8').toString('base64')}`);
      expect((await c.readUntil(/^\d{3} /, 30_000)).at(-1)).toMatch(/^235 /);
      c.send(`MAIL FROM:<${ALICE.email}>`);
      expect((await c.readUntil(/^\d{3} /)).at(-1)).toMatch(/^250 /);
      c.send('RCPT TO:<carol@example.org>');
      expect((await c.readUntil(/^\d{3} /)).at(-1)).toMatch(/^250 /);
      // Two chunks (RFC 3030): no dot-stuffing, no end-of-data line; the last one says LAST.
      c.socket.write(Buffer.concat([Buffer.from(`BDAT ${half}\r\n`), bytes.subarray(0, half)]));
      expect((await c.readUntil(/^\d{3} /)).at(-1)).toMatch(/^250 /);
      const rest = bytes.subarray(half);
      c.socket.write(Buffer.concat([Buffer.from(`BDAT ${rest.length} LAST\r\n`), rest]));
      expect((await c.readUntil(/^\d{3} /, 30_000)).at(-1)).toMatch(/^250 /);
      c.send('QUIT');
      await c.readUntil(/^221 /);
    } finally {
      c.close();
    }
    const [msg] = (await world.sink.waitForMessages(before + 1)).slice(before);
    expect(msg!.mailFrom).toBe(ALICE.email);
    expect(msg!.rcptTo).toEqual(['carol@example.org']);
    expect(msg!.afterReceived.equals(bytes)).toBe(true);
  });

  async function capa(): Promise<string[]> {
    const c = await RawPop3Client.connect(world.proxy.ports.pop3.none!);
    try {
      await c.line();
      expect(await c.command('CAPA')).toMatch(/^\+OK/);
      return (await c.multiline()).toString('latin1').split('\r\n').slice(0, -2);
    } finally {
      c.close();
    }
  }

  it("CAPA offers UIDL, TOP and PIPELINING before login (with our SASL, not Dovecot's), and UIDL works", async () => {
    const items = await eventually(capa, (i) => i.includes('UIDL'), 'CAPA without UIDL');
    expect(items).toEqual(expect.arrayContaining(['USER', 'SASL PLAIN LOGIN', 'TOP', 'UIDL', 'PIPELINING']));
    expect(items.filter((i) => i.startsWith('SASL'))).toEqual(['SASL PLAIN LOGIN']);
    expect(items).not.toContain('STLS');

    const c = await RawPop3Client.connect(world.proxy.ports.pop3.none!);
    try {
      await c.line();
      const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
      expect(await c.command('AUTH LOGIN')).toBe('+ VXNlcm5hbWU6');
      expect(await c.command(b64(ALICE.email))).toBe('+ UGFzc3dvcmQ6');
      expect(await c.command(b64(ALICE.password))).toMatch(/^\+OK/);
      // Pipelined, as the advertised PIPELINING allows: both answers come back in order.
      c.write('UIDL\r\nNOOP\r\n');
      expect(await c.line()).toMatch(/^\+OK/);
      const listing = (await c.multiline()).toString('latin1');
      expect(listing.endsWith('.\r\n')).toBe(true);
      expect(await c.line()).toMatch(/^\+OK/);
      await c.command('QUIT');
    } finally {
      c.close();
    }
  });

  /** A port on 127.0.0.1 that nothing listens on (bound once, then let go). */
  async function deadPort(): Promise<number> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }

  it('reload: an account on an unreachable upstream brings the fixed list back; pointing it at Dovecot is probed at once', async () => {
    const p = world.proxy;
    const original = readFileSync(p.configFile, 'utf8');
    const config = parseYaml(original) as {
      connections: Array<Record<string, unknown>>;
      accounts: Array<Record<string, unknown>>;
    };
    const e2e = config.connections.find((c) => c.name === 'e2e')!;
    config.connections.push({
      ...e2e,
      name: 'dead',
      smtp: { host: '127.0.0.1', port: await deadPort(), tls: 'implicit' },
    });
    config.accounts.push({
      username: 'dave@example.com',
      connection: 'dead',
      password: await hashPassword('dave pw', { ln: 10, r: 8, p: 1 }),
    });
    writeFileSync(p.configFile, stringifyYaml(config, { lineWidth: 0 }));
    expect((await p.cli(['reload', '--config', p.configFile])).code).toBe(0);
    await waitForOutput(p, '"msg":"config reloaded"');
    // Nothing is known about `dead` (its probe is refused): the fixed list, with the configured SIZE.
    const fallback = await eventually(ehlo, (k) => !k.includes('CHUNKING'), 'EHLO still with CHUNKING');
    expect(fallback.slice(1)).toEqual([
      'PIPELINING',
      '8BITMIME',
      'ENHANCEDSTATUSCODES',
      'SIZE 35000000',
      'AUTH PLAIN LOGIN',
    ]);

    // The same connection moved to Dovecot's submissions port: only the reload's probe can know it (no
    // login went there, and the periodic round is hours away).
    const dead = config.connections.find((c) => c.name === 'dead')!;
    dead.smtp = {
      host: (e2e.smtp as { host: string }).host,
      port: world.dovecot.ports.submissions,
      tls: 'implicit',
    };
    writeFileSync(p.configFile, stringifyYaml(config, { lineWidth: 0 }));
    expect((await p.cli(['reload', '--config', p.configFile])).code).toBe(0);
    await waitForOutput(p, '"msg":"config reloaded"', 2);
    await eventually(ehlo, (k) => k.includes('CHUNKING'), 'EHLO without CHUNKING after the second reload');
    writeFileSync(p.configFile, original);
  });
});

/**
 * Real SMTP clients (swaks, nodemailer) through the running proxy binary to Dovecot submission, which
 * validates the XOAUTH2 token and relays to the sink: the sink must hold the client's bytes exactly
 * (after Dovecot's one Received: header) with the client's envelope.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getTestCerts } from '../helpers/certs.js';
import { requireDovecot } from '../helpers/dovecot.js';
import type { LocalTls } from '../helpers/proxy-process.js';
import { printLogsOnFailure, run, startWorld, testMessage, worldLogs, type World } from './support.js';

const ALICE = { email: 'alice@example.com', password: 'Alice smtp ü 1' };
// bob's connection reaches Dovecot submission with implicit TLS instead of STARTTLS.
const BOB = { email: 'bob@example.com', password: 'bob-smtp', connection: 'e2e-alt' as const };

describe.runIf(requireDovecot(['swaks']))('SMTP clients through the proxy to Dovecot submission', () => {
  let world: World;
  beforeAll(async () => {
    world = await startWorld({
      accounts: [ALICE, BOB],
      listen: { imap: [], smtp: ['none', 'starttls', 'implicit'] },
    });
  });
  afterAll(async () => world?.stop());
  printLogsOnFailure(worldLogs(() => world));

  /** Sends with swaks; returns the sink's new message. */
  async function swaks(o: {
    user: { email: string; password: string };
    auth: 'PLAIN' | 'LOGIN';
    tls: LocalTls;
    raw: string;
    to: string[];
  }): Promise<void> {
    const file = join(world.proxy.dir, `swaks-${Date.now()}-${Math.random().toString(36).slice(2)}.eml`);
    // swaks always ends DATA with CRLF "." CRLF after the file's text, so the file leaves out the final
    // CRLF: what goes over the wire is then exactly `raw`.
    writeFileSync(file, o.raw.replace(/\r\n$/, ''));
    const args = [
      '--server',
      '127.0.0.1',
      '--port',
      String(world.proxy.ports.smtp[o.tls]),
      '--ehlo',
      'swaks.e2e.test',
      '--auth',
      o.auth,
      '--auth-user',
      o.user.email,
      '--auth-password',
      o.user.password,
      '--from',
      o.user.email,
      // One --to with a comma list: a repeated --to replaces the earlier one.
      '--to',
      o.to.join(','),
      '--data',
      `@${file}`,
      '--timeout',
      '30',
    ];
    if (o.tls === 'starttls') args.push('--tls');
    if (o.tls === 'implicit') args.push('--tls-on-connect');
    if (o.tls !== 'none') args.push('--tls-verify', '--tls-ca-path', getTestCerts().caFile);
    const r = await run('swaks', args);
    expect(r.code, `swaks failed:\n${r.stdout.toString('utf8')}\n${r.stderr}`).toBe(0);
  }

  async function expectDelivered(before: number, raw: string, from: string, to: string[]): Promise<void> {
    const [msg] = (await world.sink.waitForMessages(before + 1)).slice(before);
    expect(msg!.mailFrom).toBe(from);
    expect(msg!.rcptTo).toEqual(to);
    expect(msg!.raw.subarray(0, 10).toString('latin1')).toBe('Received: ');
    expect(msg!.afterReceived.toString('utf8')).toBe(raw);
    expect(msg!.afterReceived.equals(Buffer.from(raw, 'utf8'))).toBe(true);
  }

  it.each([
    ['PLAIN', 'none'],
    ['LOGIN', 'none'],
    ['PLAIN', 'starttls'],
    ['LOGIN', 'implicit'],
  ] as const)(
    'swaks AUTH %s (local %s): byte-exact at the sink with the right envelope',
    async (auth, tls) => {
      const to = ['carol@example.org', 'dave@example.net'];
      const raw = testMessage({
        from: ALICE.email,
        to: to.join(', '),
        subject: `swaks ${auth} ${tls}`,
        // A line starting with a dot exercises dot-stuffing on both hops.
        body: `.leading dot line\r\nplain line\r\n..two dots`,
      });
      const before = world.sink.messages.length;
      await swaks({ user: ALICE, auth, tls, raw, to });
      await expectDelivered(before, raw, ALICE.email, to);
    },
  );

  it('swaks through an account whose upstream uses implicit TLS: Dovecot logged a TLS login there', async () => {
    const raw = testMessage({
      from: BOB.email,
      to: 'erin@example.org',
      subject: 'swaks bob implicit upstream',
    });
    const before = world.sink.messages.length;
    const loginsBefore = world.dovecot.logins().length;
    await swaks({ user: BOB, auth: 'PLAIN', tls: 'none', raw, to: ['erin@example.org'] });
    await expectDelivered(before, raw, BOB.email, ['erin@example.org']);
    expect(await world.dovecot.waitForLogins({ count: 1, since: loginsBefore })).toEqual([
      expect.objectContaining({
        protocol: 'submission',
        user: BOB.email,
        method: 'XOAUTH2',
        localPort: world.dovecot.ports.submissions,
        tls: true,
      }),
    ]);
  });

  it.each([
    ['PLAIN', 'none'],
    ['LOGIN', 'starttls'],
    ['PLAIN', 'implicit'],
  ] as const)('nodemailer AUTH %s (local %s): byte-exact at the sink', async (method, tls) => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: world.proxy.ports.smtp[tls]!,
      secure: tls === 'implicit',
      ignoreTLS: tls === 'none',
      requireTLS: tls === 'starttls',
      tls: { ca: world.proxy.localCaPem, servername: 'localhost' },
      auth: { user: ALICE.email, pass: ALICE.password, method },
    });
    const raw = testMessage({
      from: ALICE.email,
      to: 'frank@example.org',
      subject: `nodemailer ${method} ${tls}`,
    });
    const before = world.sink.messages.length;
    const loginsBefore = world.dovecot.logins().length;
    try {
      const info = await transport.sendMail({
        envelope: { from: ALICE.email, to: ['frank@example.org'] },
        raw,
      });
      expect(info.accepted).toEqual(['frank@example.org']);
    } finally {
      transport.close();
    }
    await expectDelivered(before, raw, ALICE.email, ['frank@example.org']);
    // The upstream leg of connection e2e is submission with STARTTLS.
    const [login] = await world.dovecot.waitForLogins({ count: 1, since: loginsBefore });
    expect(login).toMatchObject({
      protocol: 'submission',
      user: ALICE.email,
      localPort: world.dovecot.ports.submission,
      tls: true,
    });
  });

  it('wrong password: 535 and nothing reaches Dovecot or the sink', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: world.proxy.ports.smtp.none!,
      secure: false,
      ignoreTLS: true,
      auth: { user: ALICE.email, pass: 'not the password', method: 'PLAIN' },
    });
    const before = world.sink.messages.length;
    const loginsBefore = world.dovecot.logins().length;
    try {
      await expect(
        transport.sendMail({
          envelope: { from: ALICE.email, to: ['x@example.org'] },
          raw: 'Subject: x\r\n\r\nx\r\n',
        }),
      ).rejects.toMatchObject({ responseCode: 535 });
    } finally {
      transport.close();
    }
    expect(world.sink.messages.length).toBe(before);
    expect(world.dovecot.logins().length).toBe(loginsBefore);
  });
});

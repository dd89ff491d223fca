/**
 * The upstream's extensions on the wire: the probe reads the fake Gmail's EHLO without logging in,
 * a session's EHLO shows what the capability source knows when the client connects, and a login
 * reports the EHLO its own dialogue saw.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ConnectionConfig } from '../../../src/config/types.js';
import type { CapabilitySource } from '../../../src/proxy/shared/upstream-capabilities.js';
import { probeSmtpExtensions } from '../../../src/proxy/smtp/upstream.js';
import { GMAIL_SIZE } from '../../helpers/fake-smtp-upstream.js';
import { PASSWORD, USER, startSmtpEnv, type SmtpEnv } from './env.js';
import { RawSmtpClient, plainIr } from './raw-client.js';

let env: SmtpEnv | undefined;
let client: RawSmtpClient | undefined;
afterEach(async () => {
  client?.close();
  client = undefined;
  await env?.close();
  env = undefined;
});

/** A capability source whose lists the test sets, and which records what logins report. */
class FakeSource implements CapabilitySource {
  known: Array<readonly string[] | undefined> = [undefined];
  readonly reported: Array<{ protocol: string; connection: string; lines: readonly string[] | undefined }> =
    [];
  lists(): Array<readonly string[] | undefined> {
    return this.known;
  }
  loggedIn(protocol: string, connection: ConnectionConfig, lines?: readonly string[]): void {
    this.reported.push({ protocol, connection: connection.name, lines });
  }
}

async function ehlo(e: SmtpEnv): Promise<string> {
  client = await RawSmtpClient.connect(e.port, false);
  await client.reply();
  const reply = await client.command('EHLO scanner.local');
  return reply;
}

describe('SMTP upstream capabilities on the wire', () => {
  it.each(['implicit', 'starttls'] as const)(
    'the probe (upstream %s) reads the EHLO keywords without logging in',
    async (upstreamTls) => {
      env = await startSmtpEnv({ listenerTls: 'none', upstreamTls });
      const connection = env.account.connection;
      const before = env.upstream.connections;
      const lines = await probeSmtpExtensions(connection, connection.smtp!, {
        heloName: 'probe.test',
        timeoutMs: 5_000,
        signal: new AbortController().signal,
      });
      expect(lines).toEqual(expect.arrayContaining(['PIPELINING', '8BITMIME', `SIZE ${GMAIL_SIZE}`]));
      expect(lines.some((l) => l.startsWith('AUTH'))).toBe(true);
      expect(env.upstream.authAttempts).toEqual([]);
      expect(env.upstream.connections).toBe(before + 1);
    },
  );

  it('EHLO shows what is known when the client connects; a login reports its own EHLO', async () => {
    const source = new FakeSource();
    env = await startSmtpEnv({ listenerTls: 'none', upstreamTls: 'implicit', capabilities: source });
    // Unknown: the fixed list with the configured SIZE.
    expect(await ehlo(env)).toMatch(
      /^250-proxy\.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE \d+\r\n250 AUTH PLAIN LOGIN$/,
    );
    client?.close();
    source.known = [['SIZE 1000', 'CHUNKING', 'AUTH XOAUTH2', 'STARTTLS', 'SMTPUTF8']];
    const c = (client = await RawSmtpClient.connect(env.port, false));
    await c.reply();
    expect(await c.command('EHLO scanner.local')).toBe(
      '250-proxy.test\r\n250-SIZE 1000\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250 AUTH PLAIN LOGIN',
    );
    expect(await c.command(`AUTH PLAIN ${plainIr(USER, PASSWORD)}`)).toBe(
      '235 2.7.0 Authentication successful',
    );
    expect(source.reported).toHaveLength(1);
    expect(source.reported[0]).toMatchObject({ protocol: 'smtp', connection: env.account.connection.name });
    expect(source.reported[0]!.lines).toEqual(expect.arrayContaining(['PIPELINING', `SIZE ${GMAIL_SIZE}`]));
  });
});

/**
 * The POP3 proxy on the wire, byte by byte: USER/PASS (which curl never picks), pipelining across
 * PASS, STLS with the injection regression, the relay's ends, limits, shutdown and the log line.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { dotStuff } from '../../helpers/fake-pop3-server.js';
import { probePop3Capabilities } from '../../../src/proxy/pop3/upstream.js';
import { RawPop3Client } from './raw-client.js';
import {
  EMAIL,
  PASSWORD,
  USER,
  eventually,
  makeMessage,
  sessionLines,
  startPop3Env,
  type Pop3Env,
} from './env.js';

let env: Pop3Env | undefined;
const clients: RawPop3Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await env?.close();
  env = undefined;
});

async function connect(e: Pop3Env, tls = false): Promise<RawPop3Client> {
  const c = await RawPop3Client.connect(e.port, tls);
  clients.push(c);
  expect(await c.line()).toBe('+OK xoauth-proxy POP3 ready');
  return c;
}

const message = makeMessage('raw', 'Hi\r\n.dot first\r\nend\r\n');

describe('POP3 proxy on the wire', () => {
  it('USER/PASS (password with spaces, quotes, colon, UTF-8), then STAT, RETR, DELE, QUIT go to the upstream', async () => {
    env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [message] });
    const c = await connect(env);
    expect(await c.command(`USER ${USER}`)).toBe('+OK Send PASS');
    expect(await c.command(`PASS ${PASSWORD}`)).toBe('+OK Welcome.');
    expect(await c.command('STAT')).toBe(`+OK 1 ${message.length}`);
    expect(await c.command('RETR 1')).toBe(`+OK ${message.length} octets`);
    // The relay passes the upstream's dot-stuffed bytes untouched.
    expect((await c.multiline()).equals(dotStuff(message))).toBe(true);
    expect(await c.command('DELE 1')).toBe('+OK message 1 deleted');
    expect(await c.command('QUIT')).toBe('+OK Farewell.');
    await c.waitClosed();
    expect(env.upstream.deleted).toEqual([1]);
    expect(env.upstream.authAttempts).toEqual([
      { mechanism: 'XOAUTH2', user: EMAIL, ok: true, initialResponse: false },
    ]);
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]).toMatchObject({
      protocol: 'pop3',
      username: USER,
      account: EMAIL,
      upstream: `127.0.0.1:${env.upstream.port}`,
      outcome: 'relayed',
      reason: 'closed by upstream',
    });
    expect(env.logText()).not.toContain(PASSWORD);
    // No key twice in the raw JSON (logger bindings must not repeat record fields such as
    // `protocol` or `session`).
    const raw =
      env
        .logText()
        .split('\n')
        .find((l) => l.includes('"session end"')) ?? '';
    const keys = [...raw.matchAll(/"([a-zA-Z]+)":/g)].map((m) => m[1]);
    expect(keys).toContain('session');
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('commands pipelined after PASS reach the upstream in order, after the login', async () => {
    env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [message] });
    const c = await connect(env);
    c.write(`CAPA\r\nUSER ${USER}\r\nPASS ${PASSWORD}\r\nSTAT\r\nLIST\r\nNOOP\r\n`);
    expect(await c.line()).toBe('+OK Capability list follows');
    expect((await c.multiline()).toString()).toBe(
      'USER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n',
    );
    expect(await c.line()).toBe('+OK Send PASS');
    expect(await c.line()).toBe('+OK Welcome.');
    expect(await c.line()).toBe(`+OK 1 ${message.length}`);
    expect(await c.line()).toBe('+OK');
    expect((await c.multiline()).toString()).toBe(`1 ${message.length}\r\n.\r\n`);
    expect(await c.line()).toBe('+OK');
    expect(env.upstream.commands[0]).toEqual(['AUTH XOAUTH2', '<payload>', 'STAT', 'LIST', 'NOOP']);
  });

  it('after login CAPA is the upstream’s own answer', async () => {
    env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [] });
    const c = await connect(env);
    await c.command(`USER ${USER}`);
    await c.command(`PASS ${PASSWORD}`);
    expect(await c.command('CAPA')).toBe('+OK Capability list follows');
    expect((await c.multiline()).toString()).toContain('X-GOOGLE-RICO');
  });

  it('AUTH PLAIN two-step and `*` cancel over a real socket', async () => {
    env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [] });
    const c = await connect(env);
    const plain = Buffer.from(`\0${USER}\0${PASSWORD}`, 'utf8').toString('base64');
    expect(await c.command('AUTH PLAIN')).toBe('+ ');
    expect(await c.command('*')).toBe('-ERR Authentication cancelled');
    expect(await c.command('AUTH PLAIN')).toBe('+ ');
    expect(await c.command(plain)).toBe('+OK Welcome.');
  });

  it('AUTH LOGIN with the base64 prompts over a real socket, then the upstream', async () => {
    env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [message] });
    const c = await connect(env);
    const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
    expect(await c.command('AUTH LOGIN')).toBe('+ VXNlcm5hbWU6');
    expect(await c.command(b64(USER))).toBe('+ UGFzc3dvcmQ6');
    expect(await c.command(b64(PASSWORD))).toBe('+OK Welcome.');
    expect(await c.command('STAT')).toBe(`+OK 1 ${message.length}`);
    expect(env.upstream.commands[0]).toEqual(['AUTH XOAUTH2', '<payload>', 'STAT']);
  });

  it.each(['implicit', 'starttls'] as const)(
    'the capability probe (upstream %s) reads the CAPA list without logging in',
    async (upstreamTls) => {
      env = await startPop3Env({ listenerTls: 'none', upstreamTls, messages: [] });
      const connection = env.account.connection;
      const lines = await probePop3Capabilities(connection, connection.pop3!, {
        timeoutMs: 5_000,
        signal: new AbortController().signal,
      });
      expect(lines).toEqual(expect.arrayContaining(['TOP', 'UIDL', 'USER']));
      expect(env.upstream.authAttempts).toEqual([]);
    },
  );

  it('STLS then USER/PASS; a command injected after STLS in the same packet is never run', async () => {
    env = await startPop3Env({ listenerTls: 'starttls', upstreamTls: 'starttls', messages: [message] });
    const c = await connect(env);
    expect(await c.command(`USER ${USER}`)).toBe('-ERR [AUTH] Plain text login disallowed: use STLS first');
    c.write(`STLS\r\nUSER ${USER}\r\n`);
    expect(await c.line()).toBe('+OK Begin TLS negotiation');
    await c.startTls();
    // Had the injected USER survived, PASS would log in; instead the proxy wants USER again.
    expect(await c.command(`PASS ${PASSWORD}`)).toBe('-ERR Send USER first');
    expect(await c.command('CAPA')).toBe('+OK Capability list follows');
    expect((await c.multiline()).toString()).not.toContain('STLS');
    expect(await c.command(`USER ${USER}`)).toBe('+OK Send PASS');
    expect(await c.command(`PASS ${PASSWORD}`)).toBe('+OK Welcome.');
    expect(await c.command('STAT')).toBe(`+OK 1 ${message.length}`);
    expect(env.upstream.commands[0]?.[0]).toBe('STLS');
  });

  it('the upstream dying mid-session ends the client connection; the proxy keeps serving', async () => {
    env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [message] });
    const c = await connect(env);
    await c.command(`USER ${USER}`);
    expect(await c.command(`PASS ${PASSWORD}`)).toBe('+OK Welcome.');
    env.upstream.dropAll();
    await c.waitClosed();
    const d = await connect(env);
    await d.command(`USER ${USER}`);
    expect(await d.command(`PASS ${PASSWORD}`)).toBe('+OK Welcome.');
    expect(await d.command('STAT')).toBe(`+OK 1 ${message.length}`);
  });

  it('the client closing mid-session closes the upstream leg', async () => {
    env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [] });
    const c = await connect(env);
    await c.command(`USER ${USER}`);
    await c.command(`PASS ${PASSWORD}`);
    c.close();
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]).toMatchObject({ outcome: 'relayed', reason: 'closed by client' });
  });

  it('limits: a too-long line and too many commands end the connection with a reply', async () => {
    env = await startPop3Env({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      limits: { maxLineLength: 64, maxCommandsBeforeLogin: 3 },
    });
    const a = await connect(env);
    a.write(`USER ${'x'.repeat(40)}`);
    a.write(`${'y'.repeat(40)}\r\n`);
    expect(await a.line()).toBe('-ERR Line too long, closing connection');
    await a.waitClosed();
    const b = await connect(env);
    b.write('CAPA\r\nSTAT\r\nNOOP\r\nSTAT\r\n');
    expect(await b.line()).toBe('+OK Capability list follows');
    await b.multiline();
    expect(await b.line()).toMatch(/^-ERR Not logged in/);
    expect(await b.line()).toMatch(/^-ERR Not logged in/);
    expect(await b.line()).toBe('-ERR Too many commands before login, closing connection');
    await b.waitClosed();
    await eventually(() => sessionLines(env!).length === 2);
    expect(sessionLines(env).map((l) => l.outcome)).toEqual(['limit', 'limit']);
  });

  it('an idle client before login is disconnected', async () => {
    env = await startPop3Env({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      limits: { preAuthIdleTimeoutMs: 300 },
    });
    const c = await connect(env);
    expect(await c.line()).toBe('-ERR Disconnected for inactivity');
    await c.waitClosed();
    await eventually(() => sessionLines(env!).length === 1);
    expect(sessionLines(env)[0]).toMatchObject({ outcome: 'timeout' });
  });

  it('too many failed logins close the connection after the last reply', async () => {
    env = await startPop3Env({
      listenerTls: 'none',
      upstreamTls: 'implicit',
      limits: { maxFailedLoginsPerConnection: 2 },
    });
    const c = await connect(env);
    await c.command(`USER ${USER}`);
    expect(await c.command('PASS nope')).toBe('-ERR [AUTH] Authentication failed');
    await c.command(`USER ${USER}`);
    expect(await c.command('PASS nope again')).toBe('-ERR [AUTH] Authentication failed');
    await c.waitClosed();
  });

  it('old devices: minVersion TLSv1 lets a TLS 1.0 client log in; the default refuses it', async () => {
    const old = { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;
    env = await startPop3Env({
      listenerTls: 'implicit',
      upstreamTls: 'implicit',
      minVersion: 'TLSv1',
      messages: [message],
    });
    const c = await RawPop3Client.connect(env.port, true, old);
    clients.push(c);
    expect(await c.line()).toBe('+OK xoauth-proxy POP3 ready');
    await c.command(`USER ${USER}`);
    expect(await c.command(`PASS ${PASSWORD}`)).toBe('+OK Welcome.');
    expect(await c.command('STAT')).toBe(`+OK 1 ${message.length}`);
    c.close();
    await env.close();
    env = undefined;

    env = await startPop3Env({ listenerTls: 'implicit', upstreamTls: 'implicit' });
    await expect(RawPop3Client.connect(env.port, true, old)).rejects.toThrow();
  });

  it('shutdown ends waiting and relayed sessions', async () => {
    env = await startPop3Env({ listenerTls: 'none', upstreamTls: 'implicit', messages: [] });
    const waiting = await connect(env);
    const relayed = await connect(env);
    await relayed.command(`USER ${USER}`);
    await relayed.command(`PASS ${PASSWORD}`);
    await env.proxy.close();
    expect(await waiting.line()).toBe('-ERR [SYS/TEMP] Server shutting down');
    await waiting.waitClosed();
    await relayed.waitClosed();
    await eventually(() => sessionLines(env!).length === 2);
    expect(
      sessionLines(env)
        .map((l) => l.outcome)
        .sort(),
    ).toEqual(['shutdown', 'shutdown']);
  });
});

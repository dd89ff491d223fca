/**
 * A logged-in Graph-mode session that a client floods with pipelined commands while never reading the
 * replies: the proxy stops reading that client once its queued replies pass a bound, so the flood
 * backs up in the client's own socket instead of the proxy's memory.
 */
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PASSWORD, USER, startLocalEnv, type LocalEnv } from './local-env.js';
import { plainIr } from './raw-client.js';

let env: LocalEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

describe('SMTP after a local login: replies the client does not read', () => {
  it('a NOOP flood without reading is held back; reading again lets it go on', async () => {
    env = await startLocalEnv();
    const sock = connect(env.port, '127.0.0.1');
    await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
    let got = '';
    const onData = (c: Buffer): void => {
      got += c.toString('latin1');
    };
    sock.on('data', onData);
    sock.write(`EHLO flood.test\r\nAUTH PLAIN ${plainIr(USER, PASSWORD)}\r\n`);
    const t0 = Date.now();
    while (!got.includes('235 ') && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 10));
    expect(got).toContain('235 ');
    // Stop reading: every reply now piles up on the proxy's side unless it stops reading us.
    sock.off('data', onData);
    sock.pause();
    const chunk = Buffer.from('NOOP\r\n'.repeat(10_000));
    let sent = 0;
    let blocked = false;
    const started = Date.now();
    while (Date.now() - started < 10_000 && sent < 200e6) {
      sent += chunk.length;
      if (sock.write(chunk)) continue;
      const drained = await Promise.race([
        new Promise<boolean>((resolve) => sock.once('drain', () => resolve(true))),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1_000)),
      ]);
      if (!drained) {
        blocked = true;
        break;
      }
    }
    // Held back after at most the socket buffers' worth (a few MB on loopback), not the whole flood.
    expect(blocked).toBe(true);
    expect(sent).toBeLessThan(64e6);
    // Reading again: the replies come, and the proxy reads the rest of the flood.
    let replies = 0;
    sock.on('data', (c: Buffer) => {
      replies += c.toString('latin1').split('250 2.0.0').length - 1;
    });
    sock.resume();
    await new Promise<void>((resolve) => sock.once('drain', () => resolve()));
    expect(replies).toBeGreaterThan(0);
    sock.destroy();
  }, 30_000);

  it('logged-in sessions still count against maxConnectionsPerAddress (each may hold a message)', async () => {
    env = await startLocalEnv({ settings: { maxConnectionsPerAddress: 2 } });
    const open = async (): Promise<{ sock: ReturnType<typeof connect>; text: () => string }> => {
      const sock = connect(env!.port, '127.0.0.1');
      let text = '';
      sock.on('data', (c: Buffer) => {
        text += c.toString('latin1');
      });
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      return { sock, text: () => text };
    };
    const until = async (check: () => boolean): Promise<void> => {
      const t0 = Date.now();
      while (!check() && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 10));
    };
    const sessions = [await open(), await open()];
    for (const s of sessions) s.sock.write(`EHLO cap.test\r\nAUTH PLAIN ${plainIr(USER, PASSWORD)}\r\n`);
    for (const s of sessions) await until(() => s.text().includes('235 '));
    for (const s of sessions) expect(s.text()).toContain('235 ');
    const third = await open();
    await until(() => third.text().length > 0);
    expect(third.text()).toMatch(/^421 /);
    for (const s of [...sessions, third]) s.sock.destroy();
  }, 30_000);

  it('a message the process has no memory for gets 452 4.3.1 while others hold theirs; freed memory serves again', async () => {
    env = await startLocalEnv({ messageMemory: 3_000, settings: { smtpMaxMessageSize: 2_000 } });
    const open = async (): Promise<{ sock: ReturnType<typeof connect>; text: () => string }> => {
      const sock = connect(env!.port, '127.0.0.1');
      let text = '';
      sock.on('data', (c: Buffer) => {
        text += c.toString('latin1');
      });
      sock.on('error', () => undefined);
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      return { sock, text: () => text };
    };
    const until = async (check: () => boolean): Promise<void> => {
      const t0 = Date.now();
      while (!check() && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 10));
    };
    const begin = `EHLO mem.test\r\nAUTH PLAIN ${plainIr(USER, PASSWORD)}\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n`;
    // A parks 1,900 bytes of a message without its end.
    const a = await open();
    a.sock.write(begin);
    await until(() => a.text().includes('354 '));
    a.sock.write(`${'a'.repeat(1_898)}\r\n`);
    // B's message would pass the 3,000 bytes: refused, to try later.
    const b = await open();
    b.sock.write(begin);
    await until(() => b.text().includes('354 '));
    b.sock.write(`${'b'.repeat(1_498)}\r\n.\r\n`);
    await until(() => /452 4\.3\.1/.test(b.text()));
    expect(b.text()).toContain('452 4.3.1 Insufficient system storage, try again later');
    // A goes away: its memory is free, and B's retry is sent.
    a.sock.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 200));
    b.sock.write(
      `MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n${'b'.repeat(1_498)}\r\n.\r\n`,
    );
    await until(() => b.text().includes('250 2.0.0 OK'));
    expect(b.text()).toContain('250 2.0.0 OK, message accepted for delivery');
    expect(env.sender.messages).toHaveLength(1);
    b.sock.destroy();
  }, 30_000);
});

/**
 * Nobody can lock a user out by guessing their password: a guesser at 127.0.0.2 locks only itself
 * (the pair of its address and the username), while the user at 127.0.0.3 logs in at once with the
 * right password, through the real IMAP front, authenticator and login limiter (default settings).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { literalLogin, startImapEnv, USER, type ImapEnv } from './env.js';
import { RawImap } from './raw-client.js';

const FAILED = 'NO [AUTHENTICATIONFAILED] Authentication failed\r\n';

describe('IMAP login limiter across client addresses', () => {
  let env: ImapEnv | undefined;
  const clients: RawImap[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await env?.close();
    env = undefined;
  });

  async function open(e: ImapEnv, from: string): Promise<RawImap> {
    const c = await RawImap.connect(e.port, false, from);
    clients.push(c);
    await c.waitFor('\r\n');
    return c;
  }

  it('12 wrong passwords from .2 lock .2 for that user but not the right password from .3', async () => {
    const e = (env = await startImapEnv({ listenerTls: 'none', upstreamTls: 'implicit' }));
    // Four connections of three failures each (the connection closes after three): 12 > lockAfter 10.
    for (let conn = 0; conn < 4; conn++) {
      const c = await open(e, '127.0.0.2');
      for (let i = 1; i <= 3; i++) {
        c.write(`g${i} LOGIN ${USER} wrong-${conn}-${i}\r\n`);
        await c.waitFor(`g${i} NO`);
      }
    }
    const user = await open(e, '127.0.0.3');
    user.write(literalLogin('u1'));
    expect(await user.waitFor(/u1 (OK|NO).*\r\n/)).toMatch(/u1 OK /);

    // The guesser's own address is locked for this user: even the right password fails there.
    const guesser = await open(e, '127.0.0.2');
    guesser.write(literalLogin('g9'));
    expect(await guesser.waitFor(/g9 .*\r\n/)).toContain(`g9 ${FAILED}`);
    expect(e.logText()).toContain('login refused: too many failures');
  });
});

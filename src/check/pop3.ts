/**
 * POP3 check: the proxy's own upstream POP3 login (greeting, STLS when configured, AUTH XOAUTH2 or
 * OAUTHBEARER in two steps, the error challenge answered, one forced refresh on a refused token) run
 * through the same orchestration as a real client's login, then STAT and QUIT. No message is
 * touched: QUIT without DELE deletes nothing (RFC 1939 §6).
 */
import { ProxyError } from '../errors.js';
import { pop3UpstreamLogin } from '../proxy/pop3/upstream.js';
import { performLogin, Secret, timedOutAfter, type UpstreamConnection } from '../proxy/shared/index.js';
import type { CheckEnv, CheckSuccess, Pop3Facts } from './types.js';

/** `+OK nn mm` (RFC 1939 §5 STAT). */
const STAT_REPLY = /^\+OK (\d+) (\d+)/;

function readWithDeadline(conn: UpstreamConnection, timeoutMs: number, what: string): Promise<string> {
  return conn.withDeadline(timeoutMs, timedOutAfter(what, timeoutMs), () => conn.readLine());
}

export async function checkPop3(env: CheckEnv): Promise<CheckSuccess<Pop3Facts>> {
  const { account } = env;
  const result = await performLogin(
    {
      // The admin running the check is not a legacy client: there is no local password to verify.
      authenticator: { verify: () => Promise.resolve(account) },
      tokens: env.tokens,
    },
    { username: account.username, password: new Secret(''), remoteAddress: 'xoauth-proxy check' },
    pop3UpstreamLogin(env.timeoutMs),
  );
  if (!result.ok) throw result.error;
  const { conn } = result.upstream;
  try {
    conn.write('STAT\r\n');
    const line = await readWithDeadline(conn, env.timeoutMs, 'STAT');
    const stat = STAT_REPLY.exec(line);
    if (!stat) {
      throw new ProxyError(
        'upstream-unavailable',
        `upstream ${conn.label}: unexpected reply to STAT: ${line.slice(0, 100)}`,
        {
          detail: line.slice(0, 100),
        },
      );
    }
    conn.write('QUIT\r\n');
    await readWithDeadline(conn, env.timeoutMs, 'QUIT').catch(() => undefined);
    return {
      mechanism: account.connection.sasl === 'oauthbearer' ? 'OAUTHBEARER' : 'XOAUTH2',
      refreshed: result.refreshed,
      facts: { messages: Number(stat[1]), octets: Number(stat[2]) },
    };
  } finally {
    conn.close();
  }
}

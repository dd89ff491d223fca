/**
 * (5) Scale-out: three proxy instances on one PostgreSQL store, next to the single instance on its
 * embedded SQLite file, in the same run.
 * - A login storm spread round-robin over the three instances, every stored access token expired:
 *   the refresh leases must make exactly one token request per account across all of them, and the
 *   login rate is compared with the single instance's storm over as many fresh accounts.
 * - Relay throughput of one PostgreSQL-backed instance against the SQLite one: after the login the
 *   store plays no part, so the ratio should be 1.
 * Without PostgreSQL the benchmark says so in its row and measures nothing.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { PostgresServer } from '../../test/helpers/postgres.js';
import { Conn, imapLogin, imapTagged, type Credentials } from '../lib/client.js';
import { storm } from './storm.js';
import type { Env } from '../lib/env.js';
import { median, type Row } from '../lib/report.js';
import type { Child } from '../lib/rpc.js';

export interface ScaleOutOptions {
  clients: number;
  instances: number;
  /** FETCHes of the big mailbox per store kind. */
  fetches: number;
}

/** MB/s of FETCHing the big mailbox `times` times over one logged-in session. */
async function fetchRate(env: Env, port: number, times: number): Promise<number[]> {
  const conn = await Conn.open(port, env.ca);
  try {
    await imapLogin(conn, 'proxy', env.warm[0]!);
    conn.write('S1 SELECT BIG\r\n');
    await imapTagged(conn, 'S1');
    const rates: number[] = [];
    for (let i = 0; i < times; i++) {
      const tag = `F${i}`;
      const t0 = performance.now();
      conn.write(`${tag} FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])\r\n`);
      const bytes = await conn.countUntil(`\r\n${tag} OK`);
      await conn.readLine();
      rates.push(bytes / 1e6 / ((performance.now() - t0) / 1000));
    }
    return rates;
  } finally {
    conn.close();
  }
}

const warm = (child: Child, set: Credentials[]): Promise<unknown> =>
  child.call('warmCredentials', { usernames: set.map((c) => c.username), password: set[0]!.password });

export async function runScaleOut(env: Env, o: ScaleOutOptions): Promise<{ rows: Row[]; raw: unknown }> {
  const single = env.storm.s1!;
  const shared = env.storm.p1!;
  const accounts = shared.length;
  let server: PostgresServer;
  try {
    server = await PostgresServer.create();
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return {
      rows: [{ benchmark: 'scale-out', metric: `skipped: ${reason}`, unit: '-' }],
      raw: { skipped: reason },
    };
  }
  const children: Child[] = [];
  try {
    const db = await server.createDatabase();
    const key = randomBytes(32).toString('base64');
    const ports: number[] = [];
    // The first one creates the schema and seeds the grants; the others join it.
    for (let i = 0; i < o.instances; i++) {
      const p = await env.startPostgresProxy({ url: db.url, key, seed: i === 0 });
      children.push(p.child);
      ports.push(p.imapPort);
    }
    // Credentials cached everywhere, so the storms compare token handling, not scrypt.
    await warm(env.proxy, single);
    for (const c of children) await warm(c, shared);
    await warm(env.proxy, env.warm);
    await warm(children[0]!, env.warm);

    const one = await storm(env, 'proxy', single, o.clients);
    const many = await storm(env, 'proxy', shared, o.clients, ports);
    const sqliteRates = await fetchRate(env, env.imap.proxy, o.fetches);
    const postgresRates = await fetchRate(env, ports[0]!, o.fetches);
    const oneRate = one.ok / one.seconds;
    const manyRate = many.ok / many.seconds;
    const relay = median(postgresRates) / median(sqliteRates);
    const title = `${o.clients} clients / ${accounts} accounts`;
    return {
      rows: [
        {
          benchmark: 'scale-out',
          metric: `logins/s, tokens expired, ${o.instances} instances on PostgreSQL (bare column: 1 on SQLite; ${title})`,
          unit: '1/s',
          bare: oneRate,
          proxy: manyRate,
          ratio: manyRate / oneRate,
          target: 'upstream-bound',
        },
        {
          benchmark: 'scale-out',
          metric: `token requests, ${o.instances} instances (bare column: 1 instance)`,
          unit: 'count',
          bare: one.tokenRequests,
          proxy: many.tokenRequests,
          target: `= ${accounts} each`,
          pass: many.tokenRequests === accounts && one.tokenRequests === accounts,
        },
        {
          benchmark: 'scale-out',
          metric: 'failed logins (bare column: 1 instance)',
          unit: 'count',
          bare: one.failed,
          proxy: many.failed,
          target: '0',
          pass: one.failed + many.failed === 0,
        },
        {
          benchmark: 'scale-out',
          metric: 'relay throughput, PostgreSQL store (bare column: SQLite store)',
          unit: 'MB/s',
          bare: median(sqliteRates),
          proxy: median(postgresRates),
          ratio: relay,
          target: 'ratio ≥ 0.95',
          pass: relay >= 0.95,
        },
      ],
      raw: { one, many, sqliteRates, postgresRates, instances: o.instances },
    };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
    await server.destroy();
  }
}

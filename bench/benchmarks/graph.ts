/**
 * (6) SMTP through Microsoft Graph beside the SMTP relay, both through the proxy: one logged-in
 * connection per path, the timed part is one transaction from MAIL FROM to the final 250. The Graph
 * path ends the SMTP transaction in the proxy and sends to the fake Graph (MIME sendMail for 100 KB, a
 * draft with an upload session for 3 MB and 10 MB); the relay path pipes to an SMTP sink. Everything
 * runs in this process (daemon, fake Graph, sink, client), so the figures compare the two paths on one
 * loaded machine rather than give absolute speeds; the fake's own parsing is on the Graph side.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { hashPassword } from '../../src/credentials/password.js';
import { startDaemon } from '../../src/daemon.js';
import { openStore } from '../../src/store/index.js';
import { getTestCerts } from '../../test/helpers/certs.js';
import { startFakeAuthServer } from '../../test/helpers/fake-auth-server.js';
import { startFakeGraph, verifyWithFakeAuth } from '../../test/helpers/fake-graph.js';
import { startFakeSmtpUpstream } from '../../test/helpers/fake-smtp-upstream.js';
import { Conn, smtpLogin, smtpReply } from '../lib/client.js';
import { median, type Row } from '../lib/report.js';

export interface GraphBenchOptions {
  reps: number;
}

const SIZES: Array<{ label: string; bytes: number }> = [
  { label: '100 KB', bytes: 100_000 },
  { label: '3 MB', bytes: 3_000_000 },
  { label: '10 MB', bytes: 10_000_000 },
];
const PASSWORD = 'bench-graph-0123';
const GRAPH_SEND = 'https://graph.microsoft.com/Mail.Send';

/**
 * A message of about `bytes` from `from` to the envelope's recipient: a text part and one base64
 * attachment (a scan, say) that makes up the size; no line starts with a dot. Both paths get the same.
 */
function message(from: string, label: string, bytes: number): Buffer {
  const boundary = 'bench-boundary-0123456789';
  const head =
    `From: ${from}\r\nTo: rcpt@bench.test\r\nSubject: graph bench ${label}\r\n` +
    `Message-ID: <graph-${label.replace(/\W/g, '')}@bench.test>\r\nMIME-Version: 1.0\r\n` +
    `Content-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n` +
    `--${boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe scan is attached.\r\n` +
    `--${boundary}\r\nContent-Type: application/pdf; name="scan.pdf"\r\n` +
    'Content-Disposition: attachment; filename="scan.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n';
  const tail = `--${boundary}--\r\n.\r\n`;
  const rawBytes = Math.max(57, Math.floor(((bytes - head.length - tail.length) * 57) / 78));
  const b64 = randomBytes(rawBytes).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return Buffer.from(`${head}${lines.join('\r\n')}\r\n${tail}`, 'latin1');
}

/** Seconds from MAIL FROM to the 250 after the message. */
async function transaction(conn: Conn, from: string, data: Buffer): Promise<number> {
  const t0 = performance.now();
  conn.write(`MAIL FROM:<${from}>\r\nRCPT TO:<rcpt@bench.test>\r\nDATA\r\n`);
  await smtpReply(conn, 250);
  await smtpReply(conn, 250);
  await smtpReply(conn, 354);
  conn.write(data);
  await smtpReply(conn, 250, 120_000);
  return (performance.now() - t0) / 1000;
}

export async function runGraph(options: GraphBenchOptions): Promise<{ rows: Row[]; raw: unknown }> {
  const certs = getTestCerts();
  const dir = mkdtempSync(join(tmpdir(), 'bench-graph-'));
  const auth = await startFakeAuthServer();
  const graph = await startFakeGraph({ verifyToken: verifyWithFakeAuth(auth) });
  const sink = await startFakeSmtpUpstream({
    tls: 'implicit',
    checkAccessToken: (t) => auth.checkAccessToken(t),
  });
  const hash = await hashPassword(PASSWORD, { ln: 10, r: 8, p: 1 });
  const connection = (name: string, extra: string[]): string[] => [
    `  - name: ${name}`,
    '    provider: custom',
    '    clientId: bench',
    '    clientSecret: bench-secret',
    `    authorizeUrl: ${auth.authorizeUrl}`,
    `    tokenUrl: ${auth.tokenUrl}`,
    "    scopes: ['https://outlook.office.com/SMTP.Send']",
    `    smtp: { host: 127.0.0.1, port: ${sink.port}, tls: implicit }`,
    `    caFile: ${certs.caFile}`,
    ...extra,
  ];
  const yaml = [
    'listen:',
    '  smtp:',
    `    - { host: 127.0.0.1, port: 0, tls: implicit, cert: ${certs.certFile}, key: ${certs.keyFile} }`,
    'store:',
    `  path: ${join(dir, 'tokens.db')}`,
    `  keyFile: ${join(dir, 'key')}`,
    'connections:',
    ...connection('relay', []),
    ...connection('graph', [
      '    send: graph',
      `    graphUrl: ${graph.url}`,
      `    graphScopes: ['${GRAPH_SEND}']`,
    ]),
    'accounts:',
    '  - { username: relay@bench.test, connection: relay, password: "HASH" }',
    '  - { username: graph@bench.test, connection: graph, password: "HASH" }',
    'settings:',
    '  limits: { smtpMaxMessageSize: 40000000 }',
  ]
    .join('\n')
    .replace(/HASH/g, hash);
  const config = parseConfig(yaml, { file: join(dir, 'config.yaml'), env: { XOAUTH_PROXY_KEY: '' } });
  const store = await openStore(config.store, { env: {} });
  for (const [email, name] of [
    ['relay@bench.test', 'relay'],
    ['graph@bench.test', 'graph'],
  ] as const) {
    const g = auth.issueGrant(email);
    await store.putToken({
      accountId: email,
      connection: name,
      refreshToken: g.refreshToken,
      accessToken: g.accessToken,
      accessTokenExpiresAt: g.expiresAt,
      scopes: ['https://outlook.office.com/SMTP.Send', GRAPH_SEND],
      state: 'active',
      updatedAt: Date.now(),
    });
  }
  await store.close();
  const daemon = await startDaemon(config, pino({ level: 'silent' }));
  const port = daemon.listeners.find((l) => l.protocol === 'smtp')!.port;
  const open = async (user: string): Promise<Conn> => {
    const conn = await Conn.open(port, certs.caPem);
    await smtpLogin(conn, 'proxy', { username: user, password: PASSWORD, email: user, accessToken: '' });
    return conn;
  };
  const relay = await open('relay@bench.test');
  const viaGraph = await open('graph@bench.test');
  const rows: Row[] = [];
  const raw: Record<string, unknown> = {};
  try {
    for (const size of SIZES) {
      const data = {
        relay: message('relay@bench.test', size.label, size.bytes),
        graph: message('graph@bench.test', size.label, size.bytes),
      };
      // One unmeasured round each: the Graph token is fetched on the first send.
      await transaction(relay, 'relay@bench.test', data.relay);
      await transaction(viaGraph, 'graph@bench.test', data.graph);
      const times = { relay: [] as number[], graph: [] as number[] };
      const ratios: number[] = [];
      for (let r = 0; r < options.reps; r++) {
        // Alternating which goes first, so drift on a shared machine hits both alike.
        const order = r % 2 === 0 ? (['relay', 'graph'] as const) : (['graph', 'relay'] as const);
        const pair: Record<string, number> = {};
        for (const path of order) {
          const s = await transaction(
            path === 'relay' ? relay : viaGraph,
            path === 'relay' ? 'relay@bench.test' : 'graph@bench.test',
            data[path],
          );
          times[path].push(s);
          pair[path] = s;
        }
        ratios.push(pair.graph! / pair.relay!);
      }
      const relayMs = median(times.relay) * 1000;
      const graphMs = median(times.graph) * 1000;
      const mb = data.graph.length / 1e6;
      rows.push(
        {
          benchmark: 'graph',
          metric: `${size.label}: MAIL FROM to 250 (bare = SMTP relay via proxy, proxy = via Graph)`,
          unit: 'ms',
          bare: relayMs,
          proxy: graphMs,
          ratio: median(ratios),
        },
        {
          benchmark: 'graph',
          metric: `${size.label}: throughput (bare = SMTP relay via proxy, proxy = via Graph)`,
          unit: 'MB/s',
          bare: mb / median(times.relay),
          proxy: mb / median(times.graph),
          ratio: median(times.relay) / median(times.graph),
        },
      );
      raw[size.label] = {
        relayMs: times.relay.map((s) => s * 1000),
        graphMs: times.graph.map((s) => s * 1000),
      };
    }
    raw.graphRequests = graph.counts;
  } finally {
    relay.socket.destroy();
    viaGraph.socket.destroy();
    await daemon.close();
    await sink.close();
    await graph.close();
    await auth.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return { rows, raw };
}

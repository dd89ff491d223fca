/** TLS session resumption to an upstream: the second connection resumes, under the same trust only. */
import type { AddressInfo } from 'node:net';
import { createServer, type TLSSocket } from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectUpstream, type UpstreamDialect } from '../../../src/proxy/shared/upstream.js';
import { forgetTlsSessions } from '../../../src/proxy/shared/tls-sessions.js';
import { getTestCerts } from '../../helpers/certs.js';

const dialect: UpstreamDialect<string> = {
  readGreeting: (conn) => conn.readLine(),
  requestStartTls: () => Promise.reject(new Error('not used')),
};

describe('upstream TLS sessions', () => {
  let server: ReturnType<typeof createServer>;
  let port: number;
  beforeEach(async () => {
    forgetTlsSessions();
    const certs = getTestCerts();
    server = createServer({ key: certs.keyPem, cert: certs.certPem }, (s) => {
      s.on('error', () => undefined);
      s.write('* OK ready\r\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterEach(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  async function connectOnce(ca: string): Promise<boolean> {
    const { conn, greeting } = await connectUpstream(
      { server: { host: '127.0.0.1', port, tls: 'implicit' }, ca, timeoutMs: 5_000 },
      dialect,
    );
    expect(greeting).toBe('* OK ready');
    // TLS 1.3 tickets arrive after the handshake; give them a moment before hanging up.
    await new Promise((r) => setTimeout(r, 50));
    const reused = (conn.socket as TLSSocket).isSessionReused();
    expect((conn.socket as TLSSocket).authorized).toBe(true);
    conn.close();
    return reused;
  }

  it('resumes the last session to the same upstream, not under another CA setting', async () => {
    const { caPem } = getTestCerts();
    expect(await connectOnce(caPem)).toBe(false);
    expect(await connectOnce(caPem)).toBe(true);
    // The same CA with a trailing newline is another trust setting as far as the cache knows: a full handshake.
    expect(await connectOnce(`${caPem}\n`)).toBe(false);
  });
});

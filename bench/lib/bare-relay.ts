/**
 * The reference "least any proxy must do": accept TLS, open TLS to the upstream (verified, same
 * settings as the proxy's upstream leg), pipe both ways. No protocol handling at all.
 */
import type { AddressInfo } from 'node:net';
import { createServer as createPlainServer, type Socket } from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';

export interface BareRelay {
  port: number;
  close(): Promise<void>;
}

export async function startBareRelay(opts: {
  cert: string;
  key: string;
  ca: string;
  upstreamPort: number;
  /** The client leg in clear text (the upstream leg stays TLS). */
  plain?: boolean;
}): Promise<BareRelay> {
  const live = new Set<Socket | TLSSocket>();
  const onClient = (client: Socket): void => {
    const upstream = connect({
      host: '127.0.0.1',
      port: opts.upstreamPort,
      ca: opts.ca,
      minVersion: 'TLSv1.2',
    });
    for (const s of [client, upstream]) {
      live.add(s);
      s.setNoDelay(true);
      s.on('close', () => live.delete(s));
    }
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  };
  const server = opts.plain
    ? createPlainServer(onClient)
    : createServer({ cert: opts.cert, key: opts.key, minVersion: 'TLSv1.2' }, onClient);
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close() {
      for (const s of live) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

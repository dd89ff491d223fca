/**
 * A network in a box: a TCP relay in front of an upstream that holds every chunk `delayMs` before
 * passing it on, each way, so one round trip through it costs 2 × `delayMs` (10 ms each way: Gmail
 * from a typical office). Chunks keep their order (timers of one duration fire in the order set).
 * It counts connections and "turns": how often the talk changes direction towards the upstream,
 * i.e. the round trips a dialogue needed beyond TCP's own handshake.
 */
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';

export interface DelayStats {
  connections: number;
  turns: number;
}

export interface DelayRelay {
  port: number;
  readonly stats: DelayStats;
  resetStats(): void;
  close(): Promise<void>;
}

export async function startDelayRelay(opts: { targetPort: number; delayMs: number }): Promise<DelayRelay> {
  const stats: DelayStats = { connections: 0, turns: 0 };
  const live = new Set<Socket>();
  const server = createServer((client) => {
    stats.connections += 1;
    live.add(client);
    client.setNoDelay(true);
    client.on('close', () => live.delete(client));
    client.on('error', () => undefined);
    client.pause();
    // The client's connect returned at once here, where it would take a round trip (SYN, SYN-ACK) and
    // its first bytes one more way: hold them two ways, so a TLS ClientHello reaches the upstream at
    // 3 × delayMs as over a real network (server-first protocols in clear text come out one way early).
    setTimeout(() => {
      if (client.destroyed) return;
      const upstream = createConnection({ host: '127.0.0.1', port: opts.targetPort }, () => {
        forward(client, upstream, 'up');
        forward(upstream, client, 'down');
        client.resume();
      });
      live.add(upstream);
      upstream.setNoDelay(true);
      upstream.on('close', () => live.delete(upstream));
      upstream.on('error', () => client.destroy());
    }, 2 * opts.delayMs);
    let lastWay: 'up' | 'down' | undefined;
    const forward = (from: Socket, to: Socket, way: 'up' | 'down'): void => {
      from.on('data', (chunk: Buffer) => {
        if (way === 'up' && lastWay !== 'up') stats.turns += 1;
        lastWay = way;
        setTimeout(() => {
          if (!to.destroyed) to.write(chunk);
        }, opts.delayMs);
      });
      from.on('end', () => setTimeout(() => to.end(), opts.delayMs));
      from.on('close', () => setTimeout(() => to.destroy(), opts.delayMs));
    };
  });
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 1024 }, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    stats,
    resetStats() {
      stats.connections = 0;
      stats.turns = 0;
    },
    close() {
      for (const s of live) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

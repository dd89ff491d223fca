import { createServer } from 'node:net';

/**
 * A port that was free a moment ago on `host`. A child process cannot report ports it bound on port 0
 * in a machine-readable way, so the test picks them: bind port 0, read the port, close, pass it on.
 * The window between close and the child's bind is tiny; callers that can retry on EADDRINUSE do.
 */
export async function pickFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('no port'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

/** Several distinct free ports (distinct even if the kernel hands the same one out twice). */
export async function pickFreePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const ports = new Set<number>();
  for (let attempt = 0; ports.size < count && attempt < count * 10; attempt++) {
    ports.add(await pickFreePort(host));
  }
  if (ports.size < count) throw new Error(`could not find ${count} free ports on ${host}`);
  return [...ports];
}

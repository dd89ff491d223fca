/**
 * Reads a PROXY protocol header off a freshly accepted socket, before anything else touches it. What
 * arrived after the header (a first command, or a TLS ClientHello sent in the same packet) is put back
 * into the socket, so whoever reads next sees exactly the client's bytes.
 */
import type { Socket } from 'node:net';
import { MAX_HEADER_LENGTH, parseProxyHeader } from './proxy-protocol.js';

export type ProxyHeaderOutcome =
  | { type: 'proxied'; address: string; port: number }
  | { type: 'local' }
  /** The peer hung up before a whole header (a balancer's bare TCP health check does that). */
  | { type: 'closed' }
  | { type: 'error'; reason: string };

export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyHeaderOutcome> {
  return new Promise((resolve) => {
    let received = Buffer.alloc(0);
    let done = false;
    const finish = (outcome: ProxyHeaderOutcome, rest?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      if (rest && rest.length > 0) socket.unshift(rest);
      resolve(outcome);
    };
    const onReadable = (): void => {
      // Read chunk by chunk and stop at the header: bytes past it stay the protocol's.
      for (
        let chunk = socket.read() as Buffer | null;
        chunk !== null;
        chunk = socket.read() as Buffer | null
      ) {
        received = Buffer.concat([received, chunk]);
        const result = parseProxyHeader(received);
        switch (result.type) {
          case 'need-more':
            if (received.length > MAX_HEADER_LENGTH) {
              finish({ type: 'error', reason: 'PROXY header too long' });
              return;
            }
            continue;
          case 'error':
            finish(result);
            return;
          case 'local':
            finish({ type: 'local' }, received.subarray(result.length));
            return;
          case 'proxied':
            finish(
              { type: 'proxied', address: result.address, port: result.port },
              received.subarray(result.length),
            );
            return;
        }
      }
    };
    const onEnd = (): void => finish({ type: 'closed' });
    const timer = setTimeout(
      () => finish({ type: 'error', reason: `no PROXY header within ${timeoutMs} ms` }),
      timeoutMs,
    );
    timer.unref();
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

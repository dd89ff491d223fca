/**
 * Server-side STARTTLS: turns an accepted plain socket into a TLS socket.
 *
 * STARTTLS command injection (CVE-2011-0411 and many since): a client, or a man in the middle, sends
 * `STARTTLS\r\nEVIL COMMAND\r\n` in one packet; a server that keeps its read buffer would run the evil
 * command as if it came over TLS. Two rules prevent it, and callers must follow the first:
 *  1. the caller drops whatever its own framer still buffers after the STARTTLS command;
 *  2. this function drops whatever the socket itself has buffered and not yet handed out.
 * Anything arriving after the switch is fed to the TLS engine, where plaintext is a handshake error.
 */
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';

const HANDSHAKE_TIMEOUT_MS = 30_000;

export interface StartTlsResult {
  socket: TLSSocket;
  /** Bytes that were sitting in the plain socket's buffer and were thrown away (for tests/logs). */
  discardedBytes: number;
}

/**
 * Call right after writing the protocol's "go ahead" reply (`OK Begin TLS`, `220 Ready`), in the same
 * tick. Removes the plain socket's 'data'/'readable' listeners; the session must remove its own other
 * listeners (e.g. 'close') from the plain socket and attach its handlers to the returned TLS socket. Rejects on handshake failure or timeout, after destroying it.
 */
export function upgradeToTls(
  socket: Socket,
  secureContext: SecureContext,
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): Promise<StartTlsResult> {
  // Only 'data'/'readable': net.Socket keeps internal 'end' handling that must stay.
  socket.removeAllListeners('data');
  socket.removeAllListeners('readable');
  socket.pause();
  let discardedBytes = 0;
  // Node's TLSSocket would otherwise replay these buffered plaintext bytes into the TLS engine; that
  // would fail the handshake rather than inject, but a clean discard is the documented behaviour.
  for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
    discardedBytes += chunk.length;
  }
  return serverHandshake(socket, secureContext, timeoutMs).then((tlsSocket) => ({
    socket: tlsSocket,
    discardedBytes,
  }));
}

/**
 * The server side of a TLS handshake on an accepted plain socket. Bytes still buffered in `socket`
 * are fed to the TLS engine first: for STARTTLS the caller has dropped them already; behind a PROXY
 * header they are the start of the client's ClientHello. Rejects on failure or timeout, after
 * destroying both sockets.
 */
export function serverHandshake(
  socket: Socket,
  secureContext: SecureContext,
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): Promise<TLSSocket> {
  const tlsSocket = new TLSSocket(socket, { isServer: true, secureContext });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('TLS handshake timed out')), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      tlsSocket.destroy();
      socket.destroy();
      reject(err);
    };
    const onClose = (): void => fail(new Error('connection closed during TLS handshake'));
    tlsSocket.once('error', fail);
    tlsSocket.once('close', onClose);
    tlsSocket.once('secure', () => {
      clearTimeout(timer);
      tlsSocket.off('error', fail);
      tlsSocket.off('close', onClose);
      // Keep an error handler until the session attaches its own, so a reset cannot crash us.
      tlsSocket.on('error', () => undefined);
      resolve(tlsSocket);
    });
  });
}

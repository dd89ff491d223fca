/**
 * Who is asking: the socket peer, or, when that peer is one of `http.trustedProxies`, the right-most
 * address in X-Forwarded-For that is not itself a trusted proxy. Each proxy appends the peer it saw,
 * so everything left of the first untrusted hop (read from the right) was written by the client and
 * may be forged; from any other peer the header is ignored altogether.
 */
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { AddressList, plainAddress as plain } from '../config/address-list.js';

export { parseCidr } from '../config/address-list.js';

export class TrustedProxies extends AddressList {
  /** The client address of a request (see the module comment). */
  clientOf(req: IncomingMessage): string {
    const peer = plain(req.socket.remoteAddress ?? 'unknown');
    if (this.empty || !this.has(peer)) return peer;
    const raw = req.headers['x-forwarded-for'];
    const header = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
    const hops = header
      .split(',')
      .map((h) => h.trim())
      .filter((h) => h !== '');
    let last = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = plain(hops[i] as string);
      // Garbage from a trusted hop: stop at the last address that hop vouched for.
      if (isIP(hop) === 0) return last;
      if (!this.has(hop)) return hop;
      last = hop;
    }
    return last;
  }
}

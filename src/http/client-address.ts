/**
 * Who is asking: the socket peer, or, when that peer is one of `http.trustedProxies`, the right-most
 * address in X-Forwarded-For that is not itself a trusted proxy. Each proxy appends the peer it saw,
 * so everything left of the first untrusted hop (read from the right) was written by the client and
 * may be forged; from any other peer the header is ignored altogether.
 */
import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';

/** `address` or `address/prefix`, IPv4 or IPv6; undefined when it is neither. */
export function parseCidr(
  text: string,
): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) return undefined;
  const address = m[1] as string;
  const version = isIP(address);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;

  /** Entries must already be valid (the config checks them); invalid ones are skipped. */
  constructor(cidrs: readonly string[] = []) {
    let added = 0;
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (!c) continue;
      this.list.addSubnet(c.address, c.prefix, c.family);
      added += 1;
    }
    this.empty = added === 0;
  }

  has(address: string): boolean {
    const a = plain(address);
    const version = isIP(a);
    if (version === 0) return false;
    return this.list.check(a, version === 4 ? 'ipv4' : 'ipv6');
  }

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

/** IPv4-mapped IPv6 as IPv4, without brackets or a zone. */
function plain(address: string): string {
  let a = address.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return mapped ? (mapped[1] as string) : a;
}

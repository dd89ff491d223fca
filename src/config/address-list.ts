/**
 * Address ranges as the config writes them (`10.0.0.5`, `192.168.0.0/16`, `fd00::/8`), for the
 * listeners' `allowFrom` and the HTTP listener's `trustedProxies`. Here, in config, because the config
 * checks the entries and both the proxy and the HTTP side match against them.
 */
import { BlockList, isIP } from 'node:net';

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

/** IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a dual-stack socket reports) as IPv4, without brackets. */
export function plainAddress(address: string): string {
  let a = address.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return mapped ? (mapped[1] as string) : a;
}

export class AddressList {
  readonly #list = new BlockList();
  readonly empty: boolean;

  /** Entries must already be valid (the config checks them); invalid ones are skipped. */
  constructor(cidrs: readonly string[] = []) {
    let added = 0;
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (!c) continue;
      this.#list.addSubnet(c.address, c.prefix, c.family);
      added += 1;
    }
    this.empty = added === 0;
  }

  has(address: string): boolean {
    const a = plainAddress(address);
    const version = isIP(a);
    if (version === 0) return false;
    return this.#list.check(a, version === 4 ? 'ipv4' : 'ipv6');
  }
}

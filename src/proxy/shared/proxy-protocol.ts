/**
 * The PROXY protocol header (HAProxy's, versions 1 and 2) that a load balancer writes before the
 * client's first byte, naming the client's real address. Pure: it looks at the bytes received so far
 * and says whether they are a whole header yet. Only the source address and port are kept; the
 * destination and any TLVs are read past.
 */
import { isIP } from 'node:net';

/** The longest v1 line the format allows, CRLF included. */
export const V1_MAX_LENGTH = 107;
/** v2's fixed part: signature, version/command, family, length. */
const V2_FIXED_LENGTH = 16;
/**
 * v2 announces its own length (up to 64 KiB); a balancer only adds a few TLVs, so anything larger is
 * not worth buffering for a header we throw away.
 */
export const V2_MAX_PAYLOAD = 1_024;
/** The longest header this parser will wait for. */
export const MAX_HEADER_LENGTH = V2_FIXED_LENGTH + V2_MAX_PAYLOAD;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export type ProxyHeaderResult =
  /** Not a whole header yet, and nothing wrong so far. */
  | { type: 'need-more' }
  /** A proxied connection: the client's address; `length` bytes of the input were the header. */
  | { type: 'proxied'; address: string; port: number; length: number }
  /** The balancer speaks for itself (v2 LOCAL, v1 UNKNOWN, or a family other than TCP): keep the socket's address. */
  | { type: 'local'; length: number }
  | { type: 'error'; reason: string };

export function parseProxyHeader(data: Buffer): ProxyHeaderResult {
  if (data.length === 0) return { type: 'need-more' };
  if (startsLike(data, V2_SIGNATURE)) {
    return data.length < V2_SIGNATURE.length ? { type: 'need-more' } : parseV2(data);
  }
  if (startsLike(data, V1_PREFIX)) {
    return data.length < V1_PREFIX.length ? { type: 'need-more' } : parseV1(data);
  }
  return { type: 'error', reason: 'not a PROXY protocol header' };
}

/** True when `data` and `prefix` agree on their common length (so a short `data` may still become it). */
function startsLike(data: Buffer, prefix: Buffer): boolean {
  const n = Math.min(data.length, prefix.length);
  return data.subarray(0, n).equals(prefix.subarray(0, n));
}

function parseV1(data: Buffer): ProxyHeaderResult {
  const end = data.indexOf('\r\n', 0, 'latin1');
  if (end === -1) {
    return data.length >= V1_MAX_LENGTH
      ? { type: 'error', reason: `PROXY v1 line longer than ${V1_MAX_LENGTH} bytes` }
      : { type: 'need-more' };
  }
  const length = end + 2;
  if (length > V1_MAX_LENGTH)
    return { type: 'error', reason: `PROXY v1 line longer than ${V1_MAX_LENGTH} bytes` };
  const fields = data.subarray(0, end).toString('latin1').split(' ');
  // UNKNOWN may be followed by anything, which the receiver must ignore.
  if (fields[1] === 'UNKNOWN') return { type: 'local', length };
  if (fields.length !== 6) return { type: 'error', reason: 'PROXY v1 line needs 6 fields' };
  const [, family, source, destination, sourcePort, destinationPort] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const version = family === 'TCP4' ? 4 : family === 'TCP6' ? 6 : 0;
  if (version === 0)
    return { type: 'error', reason: `PROXY v1 family "${family}" is not TCP4, TCP6 or UNKNOWN` };
  if (isIP(source) !== version || isIP(destination) !== version) {
    return { type: 'error', reason: `PROXY v1 addresses are not ${family}` };
  }
  const port = v1Port(sourcePort);
  if (port === undefined || v1Port(destinationPort) === undefined) {
    return { type: 'error', reason: 'PROXY v1 port is not a number from 0 to 65535' };
  }
  return { type: 'proxied', address: source, port, length };
}

/** A decimal port without sign or leading zeros (the format's wording). */
function v1Port(text: string): number | undefined {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

function parseV2(data: Buffer): ProxyHeaderResult {
  if (data.length < V2_FIXED_LENGTH) return { type: 'need-more' };
  const versionCommand = data[12] as number;
  if (versionCommand >> 4 !== 2)
    return { type: 'error', reason: 'PROXY v2 header with a version other than 2' };
  const command = versionCommand & 0x0f;
  if (command > 1) return { type: 'error', reason: `PROXY v2 command ${command} is neither LOCAL nor PROXY` };
  const familyProtocol = data[13] as number;
  const payload = data.readUInt16BE(14);
  if (payload > V2_MAX_PAYLOAD) {
    return {
      type: 'error',
      reason: `PROXY v2 header announces ${payload} bytes (at most ${V2_MAX_PAYLOAD})`,
    };
  }
  const length = V2_FIXED_LENGTH + payload;
  if (data.length < length) return { type: 'need-more' };
  // LOCAL: the balancer's own connection (a health check); the addresses, if any, mean nothing.
  if (command === 0) return { type: 'local', length };
  const body = data.subarray(V2_FIXED_LENGTH, length);
  switch (familyProtocol) {
    case 0x11: // TCP over IPv4: src 4, dst 4, src port 2, dst port 2; TLVs may follow.
      if (payload < 12) return { type: 'error', reason: 'PROXY v2 IPv4 addresses are truncated' };
      return {
        type: 'proxied',
        address: [...body.subarray(0, 4)].join('.'),
        port: body.readUInt16BE(8),
        length,
      };
    case 0x21: // TCP over IPv6: src 16, dst 16, src port 2, dst port 2; TLVs may follow.
      if (payload < 36) return { type: 'error', reason: 'PROXY v2 IPv6 addresses are truncated' };
      return { type: 'proxied', address: ipv6(body.subarray(0, 16)), port: body.readUInt16BE(32), length };
    default:
      // UNSPEC, UDP or a Unix socket: the format says to accept the connection with its real address.
      return { type: 'local', length };
  }
}

/** Sixteen bytes as an IPv6 address, compressed the way Node reports socket addresses. */
function ipv6(bytes: Buffer): string {
  // IPv4-mapped (::ffff:a.b.c.d) in the dotted form a dual-stack socket reports, so allow lists match it.
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes.readUInt16BE(10) === 0xffff) {
    return `::ffff:${[...bytes.subarray(12, 16)].join('.')}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // The longest run of two or more zero groups becomes "::".
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j += 1;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart === -1) return groups.join(':');
  const head = groups.slice(0, bestStart).join(':');
  const tail = groups.slice(bestStart + bestLength).join(':');
  return `${head}::${tail}`;
}

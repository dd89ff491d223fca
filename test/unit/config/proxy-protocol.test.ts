/** The mail listeners' proxyProtocol and trustedProxies keys. */
import { describe, expect, it } from 'vitest';
import { errorOf, load, yaml } from './helpers.js';

const listener = (...keys: string[]) => yaml('listen:', '  imap:', '    - port: 1143', ...keys);

describe('proxyProtocol on a mail listener', () => {
  it('is off by default', () => {
    expect(load(listener()).listen.imap[0]?.proxyProtocol).toBeUndefined();
  });

  it('keeps the trusted balancers when on', () => {
    const config = load(
      listener('      proxyProtocol: true', '      trustedProxies: [10.0.0.5, " fd00::/8"]'),
    );
    expect(config.listen.imap[0]?.proxyProtocol).toEqual({ trustedProxies: ['10.0.0.5', 'fd00::/8'] });
  });

  it('needs trustedProxies', () => {
    expect(errorOf(listener('      proxyProtocol: true'))).toBe(
      "cfg.yaml:3:7: listen.imap[0].trustedProxies: proxyProtocol: true needs trustedProxies, the load balancers allowed to name the client address. List the load balancers' addresses, such as trustedProxies: [10.0.0.5] (anyone else would be able to claim any address).",
    );
    expect(errorOf(listener('      proxyProtocol: true', '      trustedProxies: []'))).toContain(
      'listen.imap[0].trustedProxies: proxyProtocol: true needs trustedProxies',
    );
  });

  it('checks every trustedProxies entry', () => {
    expect(errorOf(listener('      proxyProtocol: true', '      trustedProxies: [10.0.0.0/33]'))).toContain(
      'listen.imap[0].trustedProxies[0]: "10.0.0.0/33" is not an IP address or CIDR range',
    );
  });

  it('refuses trustedProxies without proxyProtocol', () => {
    expect(errorOf(listener('      trustedProxies: [10.0.0.5]'))).toContain(
      'listen.imap[0].trustedProxies: trustedProxies has no effect without proxyProtocol: true',
    );
  });

  it('is not a key of the HTTP listener', () => {
    expect(errorOf(yaml('listen:', '  http:', '    - port: 8080', '      proxyProtocol: true'))).toContain(
      'listen.http[0].proxyProtocol: unknown key "proxyProtocol"',
    );
  });
});

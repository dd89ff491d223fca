import { describe, expect, it } from 'vitest';
import { ProxyError, isProxyError, type ProxyErrorCode } from '../../src/errors.js';

describe('ProxyError', () => {
  const table: Array<[ProxyErrorCode, boolean]> = [
    ['bad-credentials', false],
    ['needs-consent', false],
    ['token-unavailable', true],
    ['upstream-unavailable', true],
    ['upstream-rejected', false],
    ['config', false],
    ['store', false],
    ['limit', false],
  ];
  it.each(table)('%s is transient: %s', (code, transient) => {
    const err = new ProxyError(code, 'x');
    expect(err.transient).toBe(transient);
    expect(isProxyError(err, code)).toBe(true);
    expect(isProxyError(new Error('x'), code)).toBe(false);
  });
});

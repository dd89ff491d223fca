import { describe, expect, it } from 'vitest';
import { configJsonSchema } from '../../../src/config/schema.js';
import { errorOf, load, yaml } from '../config/helpers.js';

describe('http.metrics', () => {
  it('defaults to true', () => {
    expect(load('').http.metrics).toBe(true);
    expect(load(yaml('http:', '  consentHint: command')).http.metrics).toBe(true);
  });

  it('can be switched off or on explicitly', () => {
    expect(load(yaml('http:', '  metrics: false')).http.metrics).toBe(false);
    expect(load(yaml('http:', '  metrics: true')).http.metrics).toBe(true);
  });

  it('must be a boolean', () => {
    expect(errorOf(yaml('http:', '  metrics: sometimes'))).toMatch(/cfg\.yaml:2:\d+: .*boolean/i);
  });

  it('is in the JSON schema with its default', () => {
    const schema = configJsonSchema() as {
      properties: { http: { properties: Record<string, { type?: string; default?: unknown }> } };
    };
    expect(schema.properties.http.properties.metrics).toMatchObject({ type: 'boolean', default: true });
  });
});

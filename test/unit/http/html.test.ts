import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { escapeHtml, html, trusted } from '../../../src/http/html.js';

describe('html escaping', () => {
  it('escapes every interpolated value, keeps nested fragments', () => {
    const name = `<script>alert("x")</script>&'\``;
    const out = html`<p title="${name}">${name} ${html`<b>${'1 < 2'}</b>`}</p>`.toString();
    expect(out).toBe(
      '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;&#96;">' +
        '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;&#96; <b>1 &lt; 2</b></p>',
    );
  });

  it('renders arrays, numbers, and drops null/undefined/false', () => {
    expect(html`${['a', html`<i>b</i>`]}|${3}|${null}|${undefined}|${false}`.toString()).toBe(
      'a<i>b</i>|3|||',
    );
    expect(trusted('<hr>').toString()).toBe('<hr>');
  });

  it('never lets markup characters through (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        const out = html`${s}`.toString();
        expect(out).not.toMatch(/[<>"'`]/);
        // Decoding gives the input back: nothing lost, nothing added.
        const decoded = out
          .replace(/&lt;/g, '<')
          .replace(/&gt;/g, '>')
          .replace(/&quot;/g, '"')
          .replace(/&#39;/g, "'")
          .replace(/&#96;/g, '`')
          .replace(/&amp;/g, '&');
        expect(decoded).toBe(s);
      }),
      { numRuns: 500 },
    );
    expect(escapeHtml('a&amp;')).toBe('a&amp;amp;');
  });
});

/**
 * What one upstream connection pays for `upstreamTlsOptions()` passing `ca: [...rootCertificates, ca]`
 * to `tls.connect()`: Node builds a fresh SecureContext (parses every PEM root into a new X509_STORE)
 * per call. Measures time and retained RSS per context, against one cached context.
 * Usage: tsx --expose-gc bench/tools/secure-context-cost.ts [count]
 */
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { getTestCerts } from '../../test/helpers/certs.js';

const count = Number(process.argv[2] ?? 200);
const ca = getTestCerts().caPem;
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

function measure(label: string, make: () => SecureContext): void {
  gc();
  const rss0 = process.memoryUsage().rss;
  const kept: SecureContext[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) kept.push(make());
  const ms = (performance.now() - t0) / count;
  gc();
  const kib = (process.memoryUsage().rss - rss0) / count / 1024;
  console.log(
    `${label}: ${ms.toFixed(2)} ms and ${kib.toFixed(0)} KiB RSS per connection (${kept.length} kept)`,
  );
}

console.log(`${rootCertificates.length} bundled root certificates`);
measure('new context per connection (today)', () =>
  createSecureContext({ ca: [...rootCertificates, ca], minVersion: 'TLSv1.2' }),
);
const cached = createSecureContext({ ca: [...rootCertificates, ca], minVersion: 'TLSv1.2' });
measure('one cached context (proposed)', () => cached);

/**
 * The daemon starts without the PostgreSQL driver and without mailparser: an embedded-store proxy that
 * never sends through Graph must not carry them in its heap (every garbage collection scans it). Both
 * load on first use (`store.kind: postgres`, the first message through Graph).
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

function loadedAfter(entries: string[]): Record<string, boolean> {
  const script = `
    import { createRequire } from 'node:module';
    for (const e of ${JSON.stringify(entries)}) await import(e);
    const keys = Object.keys(createRequire(import.meta.url).cache);
    const has = (m) => keys.some((k) => k.includes('/node_modules/' + m + '/'));
    console.log(JSON.stringify({ pg: has('pg'), mailparser: has('mailparser'), sqlite: has('better-sqlite3') }));
  `;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, boolean>;
}

describe('what the daemon loads at start', () => {
  it('not pg and not mailparser; the modules that need them do load them', () => {
    expect(loadedAfter([`${ROOT}src/daemon.ts`])).toEqual({ pg: false, mailparser: false, sqlite: true });
    expect(loadedAfter([`${ROOT}src/store/postgres-store.ts`, `${ROOT}src/graph/index.ts`])).toMatchObject({
      pg: true,
      mailparser: true,
    });
  }, 60_000);
});

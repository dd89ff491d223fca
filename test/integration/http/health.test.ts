/**
 * /healthz and /readyz on the HTTP listener: no authentication, no account data, plain text; /readyz
 * answers 503 with a short reason when the token store cannot be read or the daemon says it is not
 * ready, and the admin lockout does not reach them. Last, the same probes through startDaemon's wiring.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../../src/config/defaults.js';
import type { Config, ListenerConfig } from '../../../src/config/types.js';
import { startDaemon, type Daemon } from '../../../src/daemon.js';
import { silentLogger } from '../../../src/log.js';
import type { Store } from '../../../src/oauth/types.js';
import { startHarness, type Harness } from './harness.js';

let h: Harness | undefined;
let daemon: Daemon | undefined;
let dir: string | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  await daemon?.close();
  daemon = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

async function probe(base: string, path: string, init: RequestInit = {}) {
  const res = await fetch(`${base}${path}`, init);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type'), res };
}

describe('health probes', () => {
  it('/healthz and /readyz answer 200 ok without credentials and are never cached', async () => {
    h = await startHarness();
    for (const path of ['/healthz', '/readyz']) {
      const r = await probe(h.base, path);
      expect(r.status).toBe(200);
      expect(r.body).toBe('ok\n');
      expect(r.type).toBe('text/plain; charset=utf-8');
      expect(r.res.headers.get('cache-control')).toBe('no-store');
      const head = await probe(h.base, path, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.body).toBe('');
    }
    expect((await probe(h.base, '/readyz', { method: 'POST' })).status).toBe(405);
  });

  it('/readyz is 503 with a short reason once the store cannot be read; /healthz stays 200', async () => {
    h = await startHarness();
    await h.store.close();
    const r = await probe(h.base, '/readyz');
    expect(r.status).toBe(503);
    expect(r.body).toBe('token store cannot be read\n');
    expect(r.type).toBe('text/plain; charset=utf-8');
    expect((await probe(h.base, '/healthz')).status).toBe(200);
  });

  it('/readyz is 503 with a store whose reads fail, and says nothing of the error or any account', async () => {
    const failing = {
      ping: () => Promise.reject(new Error('SQLITE_IOERR at /secret/path/tokens.db for alice@example.com')),
      deriveKey: () => Buffer.alloc(32, 7),
    } as unknown as Store;
    h = await startHarness({ deps: { store: failing } });
    const r = await probe(h.base, '/readyz');
    expect(r.status).toBe(503);
    expect(r.body).toBe('token store cannot be read\n');
    expect(r.body).not.toMatch(/secret|alice|SQLITE/);
  });

  it("/readyz reports the daemon's reason (a listener not bound, a shutdown)", async () => {
    let reason: string | undefined = 'imap listener 127.0.0.1:1143 is not bound';
    h = await startHarness({ deps: { readiness: () => reason } });
    const r = await probe(h.base, '/readyz');
    expect(r.status).toBe(503);
    expect(r.body).toBe('imap listener 127.0.0.1:1143 is not bound\n');
    reason = undefined;
    expect((await probe(h.base, '/readyz')).status).toBe(200);
  });

  it('an address locked out of /admin still gets its probes answered', async () => {
    h = await startHarness({ http: `  adminPassword: 'tok-0123456789abcdef'` });
    const wrong = { Authorization: `Basic ${Buffer.from('admin:wrong-password').toString('base64')}` };
    let status = 0;
    for (let i = 0; i < 20 && status !== 429; i++)
      status = (await fetch(`${h.base}/admin`, { headers: wrong })).status;
    expect(status).toBe(429);
    expect((await probe(h.base, '/healthz')).status).toBe(200);
    expect((await probe(h.base, '/readyz')).status).toBe(200);
  });

  it('through the daemon: 200 with every listener bound', async () => {
    dir = mkdtempSync(join(tmpdir(), 'xoauth-health-'));
    const local: ListenerConfig = { host: '127.0.0.1', port: 0, tls: 'none' };
    const config: Config = {
      file: join(dir, 'config.yaml'),
      listen: { imap: [local], smtp: [local], pop3: [], http: [local] },
      store: { path: join(dir, 'tokens.db'), keyFile: join(dir, 'store.key') },
      connections: new Map(),
      accounts: [],
      settings: DEFAULTS.settings,
      http: { consentHint: 'command' },
      notify: DEFAULTS.notify,
    };
    daemon = await startDaemon(config, silentLogger());
    const http = daemon.listeners.find((l) => l.protocol === 'http');
    const base = `http://127.0.0.1:${http?.port}`;
    const r = await probe(base, '/readyz');
    expect(r).toMatchObject({ status: 200, body: 'ok\n' });
  });
});

/**
 * The Dockerfile, deploy/docker-compose.yml and the systemd unit: the directives operations rely on are
 * there, and what they reference (entry point, copied files, ports, health URL) exists in the package.
 * `systemd-analyze verify` runs on the unit where that binary is installed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { DEFAULTS } from '../../../src/config/defaults.js';
import { parseDuration } from '../../../src/config/duration.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string>; files: string[] };
const binEntry = pkg.bin['xoauth-proxy'] as string;
const exampleConfig = parseYaml(read('config.example.yaml')) as {
  listen: Record<string, Array<{ port: number }>>;
};
const examplePorts = Object.values(exampleConfig.listen).flatMap((ls) => ls.map((l) => l.port));
const httpPort = exampleConfig.listen.http?.[0]?.port;

/** dist/cli/main.js is built from src/cli/main.ts. */
function sourceOf(distPath: string): string {
  return distPath.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts');
}

function unitDirectives(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    map.set(key, [...(map.get(key) ?? []), line.slice(eq + 1)]);
  }
  return map;
}

describe('Dockerfile', () => {
  const text = read('Dockerfile');

  it('runs as an explicit numeric non-root user', () => {
    const users = [...text.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1] as string);
    const last = users.at(-1);
    expect(last).toMatch(/^\d+(:\d+)?$/);
    expect(Number(last?.split(':')[0])).toBeGreaterThan(0);
  });

  it('has a HEALTHCHECK that asks /healthz with node, on the example config HTTP port', () => {
    const health = /^HEALTHCHECK[\s\S]*?CMD[^\n]*/m.exec(text)?.[0] ?? '';
    expect(health).toMatch(/CMD \["node",/);
    expect(health).not.toMatch(/curl|wget/);
    const url = /XOAUTH_PROXY_HEALTH_URL=(\S+)/.exec(text)?.[1];
    expect(url).toBe(`http://127.0.0.1:${httpPort}/healthz`);
  });

  it('starts the package bin, copies files that exist, exposes the example ports', () => {
    const entry = /^ENTRYPOINT \["node", "([^"]+)"\]/m.exec(text)?.[1];
    expect(entry).toBe(binEntry);
    expect(existsSync(join(ROOT, sourceOf(binEntry)))).toBe(true);
    const copied = /^COPY package\.json (.+) \.\/$/m.exec(text)?.[1]?.split(/\s+/) ?? [];
    expect(copied.length).toBeGreaterThan(0);
    for (const file of copied) expect(existsSync(join(ROOT, file)), file).toBe(true);
    const exposed = (/^EXPOSE (.+)$/m.exec(text)?.[1] ?? '').split(/\s+/).map(Number);
    expect(exposed.sort()).toEqual([...examplePorts].sort());
    expect(text).toMatch(/^VOLUME \["\/data"\]/m);
  });
});

describe('deploy/docker-compose.yml', () => {
  const compose = parseYaml(read('deploy/docker-compose.yml')) as {
    services: Record<string, Record<string, unknown>>;
    volumes: Record<string, unknown>;
  };
  const service = compose.services['xoauth-proxy'] as {
    volumes: string[];
    ports: string[];
    stop_grace_period: string;
    environment: Record<string, string>;
    build: string;
  };

  it('mounts the config and a data volume, publishes on loopback, builds this repository', () => {
    expect(service.volumes).toContain('./config:/config:ro');
    const data = service.volumes.find((v) => v.endsWith(':/data'));
    expect(data).toBeDefined();
    expect(Object.keys(compose.volumes)).toContain(data?.split(':')[0]);
    for (const p of service.ports) expect(p).toMatch(/^127\.0\.0\.1:/);
    expect(existsSync(join(ROOT, 'deploy', service.build, 'Dockerfile'))).toBe(true);
    expect(service.environment.XOAUTH_PROXY_HEALTH_URL).toBe(`http://127.0.0.1:${httpPort}/healthz`);
    expect(read('deploy/docker-compose.yml')).toMatch(/#.*PostgreSQL/);
  });

  it('gives the graceful shutdown more time than settings.shutdownGrace', () => {
    expect(parseDuration(service.stop_grace_period) ?? 0).toBeGreaterThan(DEFAULTS.settings.shutdownGraceMs);
  });
});

describe('deploy/systemd/xoauth-proxy.service', () => {
  const text = read('deploy/systemd/xoauth-proxy.service');
  const d = unitDirectives(text);
  const one = (key: string): string | undefined => d.get(key)?.at(-1);

  it('has a dedicated user, a state directory, and reload by SIGHUP', () => {
    expect(one('User')).toBe('xoauth-proxy');
    expect(one('StateDirectory')).toBe('xoauth-proxy');
    expect(one('ExecReload')).toMatch(/^(\/bin\/|\/usr\/bin\/)?kill -HUP \$MAINPID$/);
  });

  it('is sandboxed', () => {
    for (const [key, value] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
    ] as const) {
      expect(one(key), key).toBe(value);
    }
    expect(one('RestrictAddressFamilies')?.split(/\s+/).sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_UNIX']);
    expect(d.get('CapabilityBoundingSet')).toEqual(['']);
    // Granted only for ports below 1024: present as a commented line to enable, not active by default.
    expect(d.has('AmbientCapabilities')).toBe(false);
    expect(text).toMatch(/^#AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
  });

  it('starts the package bin and waits longer than settings.shutdownGrace on stop', () => {
    const exec = one('ExecStart') ?? '';
    expect(exec).toContain(`/xoauth-proxy/${binEntry} start --config `);
    expect(existsSync(join(ROOT, sourceOf(binEntry)))).toBe(true);
    expect(parseDuration(one('TimeoutStopSec') ?? '0s') ?? 0).toBeGreaterThan(
      DEFAULTS.settings.shutdownGraceMs,
    );
    expect(one('RestartPreventExitStatus')).toBe('2');
  });

  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  it.skipIf(analyze.status !== 0)('passes systemd-analyze verify', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xoauth-unit-'));
    try {
      // verify checks that the executable exists: use the node running this test.
      const unit = join(dir, 'xoauth-proxy.service');
      writeFileSync(unit, text.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`));
      const out = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', timeout: 60_000 });
      expect(out.status, out.stderr).toBe(0);
      expect(out.stderr).not.toMatch(/xoauth-proxy\.service:\d+/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../../src/config/errors.js';
import { loadConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/types.js';

/** A fresh directory with the given files; returns its path. */
export function tempDir(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'xoauth-config-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** Lines joined with "\n", so a fixture's line numbers are easy to read off. */
export const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

export function load(text: string, env: NodeJS.ProcessEnv = {}, files: Record<string, string> = {}): Config {
  const dir = tempDir({ ...files, 'cfg.yaml': text });
  return loadConfig(join(dir, 'cfg.yaml'), { env });
}

/** The ConfigError message with the temp directory cut off, so it reads `cfg.yaml:3:5: ...`. */
export function errorOf(
  text: string,
  env: NodeJS.ProcessEnv = {},
  files: Record<string, string> = {},
): string {
  const dir = tempDir({ ...files, 'cfg.yaml': text });
  try {
    loadConfig(join(dir, 'cfg.yaml'), { env });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.message.split(`${dir}/`).join('').split(dir).join('<dir>');
  }
  throw new Error('expected a ConfigError');
}

export const GOOGLE = [
  '  - name: g',
  '    provider: google',
  '    clientId: gid',
  '    clientSecret: gsecret',
];
export const MICROSOFT = [
  '  - name: m',
  '    provider: microsoft',
  '    clientId: mid',
  '    tenantId: contoso.onmicrosoft.com',
];

/**
 * A configuration problem, pointing at the exact spot in the YAML file so an admin can fix it without
 * guessing. One ConfigError may carry several issues (all schema problems are reported at once).
 */
import { ProxyError } from '../errors.js';

export interface ConfigIssue {
  /** File the issue is in (as given, for messages). */
  file: string;
  /** 1-based; absent when the problem has no position (the file cannot be read at all). */
  line?: number;
  col?: number;
  /** Key path such as `connections[0].tenantId`; empty for the whole document. */
  path: string;
  /** What is wrong. */
  problem: string;
  /** How to fix it. */
  fix?: string;
}

export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line === undefined ? issue.file : `${issue.file}:${issue.line}:${issue.col ?? 1}`;
  const key = issue.path === '' ? '' : `${issue.path}: `;
  const fix = issue.fix === undefined ? '' : ` ${issue.fix}`;
  return `${where}: ${key}${issue.problem}.${fix}`;
}

export class ConfigError extends ProxyError {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: ConfigIssue[], options?: { cause?: unknown }) {
    super('config', issues.map(formatIssue).join('\n'), options);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** `['connections', 0, 'tenantId']` -> `connections[0].tenantId`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

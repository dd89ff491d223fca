/**
 * Reads the YAML config: parse (with positions), expand `${VAR}` in the parsed values, validate with the
 * zod schema, then build the `Config` (provider presets, files, cross-field rules). Every problem becomes
 * a ConfigIssue naming file:line:col, the key path, what is wrong and how to fix it; all problems of one
 * stage are reported together.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { buildConfig, type Path } from './build.js';
import { ConfigError, formatPath, type ConfigIssue } from './errors.js';
import { expandEnv } from './expand.js';
import { configSchema } from './schema.js';
import { allowedKeys, closestKey } from './suggest.js';
import type { Config } from './types.js';

export interface LoadOptions {
  /** Environment for `${VAR}` expansion; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
}

export function loadConfig(file: string, options: LoadOptions = {}): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError(
      [
        {
          file,
          path: '',
          problem: `cannot read the config file (${reason})`,
          fix: 'Check the path, or pass another file with --config <file>.',
        },
      ],
      { cause: err },
    );
  }
  return parseConfig(text, { file, ...options });
}

/** Like loadConfig, for YAML already in memory; `file` names it in messages and anchors relative paths. */
export function parseConfig(text: string, options: LoadOptions & { file: string }): Config {
  const { file } = options;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => ({
        file,
        line: e.linePos?.[0].line,
        col: e.linePos?.[0].col,
        path: '',
        ...(e.code === 'DUPLICATE_KEY'
          ? { problem: 'this key appears twice in the same mapping', fix: 'Keep only one of them.' }
          : e.code === 'MULTIPLE_DOCS'
            ? { problem: 'the file holds more than one YAML document', fix: 'Remove the extra "---" line.' }
            : {
                problem: `YAML syntax error: ${e.message.replace(/ at line \d+, column \d+:[\s\S]*$/, '')}`,
                fix: 'Check indentation, colons, quotes and brackets around this spot.',
              }),
      })),
    );
  }
  const locate = (path: Path) => locatePath(doc, lineCounter, path);
  const issueAt = (path: Path, problem: string, fix?: string): ConfigIssue => {
    const pos = locate(path);
    return { file, ...pos, path: formatPath(path), problem, ...(fix !== undefined && { fix }) };
  };

  const js = toJS(doc, lineCounter, file);
  const expanded = expandEnv(js, options.env ?? process.env);
  if (expanded.issues.length > 0) {
    throw new ConfigError(expanded.issues.map((i) => issueAt(i.path, i.problem, i.fix)));
  }

  const parsed = configSchema.safeParse(expanded.value);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.flatMap((i) => schemaIssues(i, expanded.value, issueAt)));
  }

  const dir = dirname(resolve(file));
  const built = buildConfig(parsed.data, { file, dir, locate });
  if (built.issues.length > 0) {
    throw new ConfigError(built.issues.map((i) => issueAt(i.path, i.problem, i.fix)));
  }
  return built.config;
}

/** doc.toJS(), with YAML's alias errors (typically an unquoted `*@example.com`) turned into ConfigErrors. */
function toJS(doc: Document, lineCounter: LineCounter, file: string): unknown {
  const unresolved: ConfigIssue[] = [];
  visit(doc, {
    Alias(_key, node) {
      if (node.resolve(doc) !== undefined) return;
      const pos = node.range ? lineCounter.linePos(node.range[0]) : undefined;
      unresolved.push({
        file,
        ...pos,
        path: '',
        problem: `"*${node.source}" is read as a YAML alias (a leading * refers to an &anchor)`,
        fix: `Quote it: '*${node.source}'.`,
      });
    },
  });
  if (unresolved.length > 0) throw new ConfigError(unresolved);
  try {
    return doc.toJS({ maxAliasCount: 1000 }) ?? {};
  } catch (err) {
    throw new ConfigError(
      [
        {
          file,
          path: '',
          problem: `YAML error: ${(err as Error).message}`,
          fix: 'Check anchors (&) and aliases (*).',
        },
      ],
      { cause: err },
    );
  }
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let node = root;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

type IssueAt = (path: Path, problem: string, fix?: string) => ConfigIssue;

function schemaIssues(issue: z.core.$ZodIssue, input: unknown, issueAt: IssueAt): ConfigIssue[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    const allowed = allowedKeys(configSchema, path) ?? [];
    return issue.keys.map((key) => {
      const near = closestKey(key, allowed);
      const fix =
        near !== undefined
          ? `Did you mean "${near}"?`
          : allowed.length > 0
            ? `Remove it; allowed here: ${allowed.join(', ')}.`
            : 'Remove it.';
      return issueAt([...path, key], `unknown key "${key}"`, fix);
    });
  }
  if (issue.code === 'invalid_value' && issue.values.length > 1) {
    return [issueAt(path, `must be one of: ${issue.values.map(String).join(', ')}`)];
  }
  if (path.length > 0 && valueAt(input, path) === undefined) {
    return [issueAt(path, 'is missing', 'Add it.')];
  }
  if (issue.code === 'invalid_type' && issue.expected === 'object') {
    return [issueAt(path, 'must be a mapping of keys to values')];
  }
  if (issue.code === 'invalid_type' && issue.expected === 'array') {
    return [issueAt(path, 'must be a list (lines starting with "- ")')];
  }
  return [issueAt(path, issue.message)];
}

/**
 * line:col of the key at the end of `path` (or of the list item), falling back to the deepest node that
 * exists, so a missing key points at the mapping it belongs in.
 */
export function locatePath(
  doc: Document,
  lineCounter: LineCounter,
  path: Path,
): { line: number; col: number } | undefined {
  let node: unknown = doc.contents;
  let pos: number | undefined = (doc.contents as Node | null)?.range?.[0];
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(key));
      if (!pair) break;
      pos = (pair.key as Node).range?.[0] ?? pos;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      const item = node.items[key] as Node | undefined;
      if (!item) break;
      pos = item.range?.[0] ?? pos;
      node = item;
    } else {
      break;
    }
  }
  return pos === undefined ? undefined : lineCounter.linePos(pos);
}

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** The top-level folder of src/ a file belongs to (a file directly under src/ is its own unit). */
function unitOf(path: string): string {
  const parts = relative(SRC, path).split('/');
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/\.ts$/, '');
}

/** unit -> unit -> one example import, for every relative import (type-only imports included). */
function folderGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\b(?:import|export)\b[^;'"]*?\bfrom\s+['"](\.[^'"]+)['"]/g)) {
      const target = resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts'));
      const [from, to] = [unitOf(file), unitOf(target)];
      if (from === to) continue;
      const out = graph.get(from) ?? new Map<string, string>();
      if (!out.has(to)) out.set(to, `${relative(SRC, file)} imports ${m[1]}`);
      graph.set(from, out);
    }
  }
  return graph;
}

/** Every cycle, as the chain of example imports that closes it. */
function cycles(graph: Map<string, Map<string, string>>): string[][] {
  const found: string[][] = [];
  const seen = new Set<string>();
  const walk = (start: string, at: string, path: string[], visited: Set<string>): void => {
    for (const [next, why] of graph.get(at) ?? []) {
      if (next === start) {
        const key = [...visited].sort().join(',');
        if (!seen.has(key)) {
          seen.add(key);
          found.push([...path, why]);
        }
      } else if (!visited.has(next)) {
        walk(start, next, [...path, why], new Set([...visited, next]));
      }
    }
  };
  for (const unit of graph.keys()) walk(unit, unit, [], new Set([unit]));
  return found;
}

describe('module structure', () => {
  it('finds a cycle when there is one (the check itself works)', () => {
    const graph = new Map([
      ['a', new Map([['b', 'a/x.ts imports ../b/y.js']])],
      ['b', new Map([['a', 'b/y.ts imports ../a/x.js']])],
    ]);
    expect(cycles(graph)).toEqual([['a/x.ts imports ../b/y.js', 'b/y.ts imports ../a/x.js']]);
  });

  it('no import cycle between the top-level folders of src/', () => {
    const graph = folderGraph();
    expect(graph.size).toBeGreaterThan(5);
    expect(cycles(graph)).toEqual([]);
  });
});

/**
 * "Did you mean ...?" for unknown keys: the keys the schema allows at a path, and the closest one.
 */
import { z } from 'zod';

function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let s = schema;
  for (let i = 0; i < 20; i++) {
    const def = s._zod.def as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
    if ((def.type === 'optional' || def.type === 'default' || def.type === 'prefault') && def.innerType) {
      s = def.innerType;
    } else if (def.type === 'pipe' && def.in) {
      s = def.in;
    } else {
      break;
    }
  }
  return s;
}

/** The keys an object at `path` may have, or undefined when the path does not lead to an object. */
export function allowedKeys(schema: z.core.$ZodType, path: readonly PropertyKey[]): string[] | undefined {
  let s = unwrap(schema);
  for (const part of path) {
    if (s instanceof z.ZodObject) {
      const next = (s.shape as Record<string, z.core.$ZodType>)[String(part)];
      if (!next) return undefined;
      s = unwrap(next);
    } else if (s instanceof z.ZodArray) {
      s = unwrap(s.element as z.core.$ZodType);
    } else {
      return undefined;
    }
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape) : undefined;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] as number;
      row[j] = Math.min(current + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = current;
    }
  }
  return row[b.length] as number;
}

/** The allowed key closest to `key` (same letters in another case, or at most 2 edits away). */
export function closestKey(key: string, allowed: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  let best: { key: string; d: number } | undefined;
  for (const candidate of allowed) {
    const d = candidate.toLowerCase() === lower ? 0 : distance(lower, candidate.toLowerCase());
    if (d <= Math.min(2, Math.floor(key.length / 3)) && (!best || d < best.d)) best = { key: candidate, d };
  }
  return best?.key;
}

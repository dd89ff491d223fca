/**
 * `${VAR}`, `${VAR:-default}` and the `$${` escape, expanded in the parsed values (never in the YAML
 * document itself, so a secret can never be written back into a file). Only string values are touched;
 * keys never are.
 */
export interface ExpandIssue {
  path: (string | number)[];
  problem: string;
  fix: string;
}

const TOKEN = /\$\$\{|\$\{([^}]*)\}|\$\{/g;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function expandString(
  text: string,
  env: NodeJS.ProcessEnv,
): { value: string; issue?: Omit<ExpandIssue, 'path'> } {
  let issue: Omit<ExpandIssue, 'path'> | undefined;
  const value = text.replace(TOKEN, (match, body: string | undefined) => {
    if (match === '$${') return '${';
    if (body === undefined) {
      issue ??= {
        problem: `"\${" is not closed`,
        fix: 'Close it with "}", or write "$${" for a literal "${".',
      };
      return match;
    }
    const sep = body.indexOf(':-');
    const name = sep === -1 ? body : body.slice(0, sep);
    if (!NAME.test(name)) {
      issue ??= {
        problem: `"\${${body}}" is not a valid variable reference`,
        fix: 'Use ${NAME} or ${NAME:-default} with a name of letters, digits and "_", or write "$${" for a literal "${".',
      };
      return match;
    }
    const current = env[name];
    if (current !== undefined && current !== '') return current;
    if (sep !== -1) return body.slice(sep + 2);
    issue ??= {
      problem: `environment variable ${name} is not set`,
      fix: `Set ${name}, or give a default with \${${name}:-value}.`,
    };
    return match;
  });
  return issue === undefined ? { value } : { value, issue };
}

/** Returns a deep copy with every string expanded, plus one issue per string that could not be. */
export function expandEnv(value: unknown, env: NodeJS.ProcessEnv): { value: unknown; issues: ExpandIssue[] } {
  const issues: ExpandIssue[] = [];
  const walk = (node: unknown, path: (string | number)[]): unknown => {
    if (typeof node === 'string') {
      const out = expandString(node, env);
      if (out.issue) issues.push({ path, ...out.issue });
      return out.value;
    }
    if (Array.isArray(node)) return node.map((item, i) => walk(item, [...path, i]));
    if (node !== null && typeof node === 'object') {
      const copy: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(node)) copy[key] = walk(item, [...path, key]);
      return copy;
    }
    return node;
  };
  return { value: walk(value, []), issues };
}

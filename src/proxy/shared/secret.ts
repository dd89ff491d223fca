/**
 * A password or token in a box that will not print itself: `String(secret)`, `JSON.stringify`,
 * template strings and `util.inspect` (so console.log and pino) all show `[secret]`. Only `reveal()`
 * gives the value, which makes every place that needs the plain text easy to find.
 */
import { inspect } from 'node:util';

export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  get length(): number {
    return this.#value.length;
  }

  toString(): string {
    return '[secret]';
  }

  toJSON(): string {
    return '[secret]';
  }

  [inspect.custom](): string {
    return 'Secret([secret])';
  }
}

/**
 * Drives a line-based protocol front (SmtpFront, Pop3Front) like its session does, without sockets:
 * replies are collected as wire text, actions in order. Shared by the SMTP and POP3 unit tests.
 */
import { ProxyError } from '../../src/errors.js';
import { Secret } from '../../src/proxy/shared/secret.js';

/** What the harness needs from a front. */
export interface LineFront<A, E> {
  readonly state: { phase: { name: string } };
  start(): A[];
  receive(chunk: Buffer): A[];
  resolve(event: E): A[];
  takeRemainder(): Buffer;
}

type AnyAction = { type: string } | { type: 'send'; reply: string };

export class FrontHarness<A extends AnyAction, E, F extends LineFront<A, E>> {
  /** Everything sent to the client so far, CRLF-terminated, as on the wire. */
  wire = '';
  readonly actions: A[] = [];

  /** `encoding`: how test strings become client bytes (POP3 UTF-8, SMTP latin1). */
  constructor(
    readonly front: F,
    readonly encoding: BufferEncoding,
  ) {
    this.#record(front.start());
  }

  /** Client bytes; returns the replies they produced. */
  send(data: string | Buffer): string {
    const before = this.wire.length;
    this.#record(this.front.receive(typeof data === 'string' ? Buffer.from(data, this.encoding) : data));
    return this.wire.slice(before);
  }

  resolve(event: E): string {
    const before = this.wire.length;
    this.#record(this.front.resolve(event));
    return this.wire.slice(before);
  }

  ofType<T extends A['type']>(type: T): Extract<A, { type: T }>[] {
    return this.actions.filter((a): a is Extract<A, { type: T }> => a.type === type);
  }

  get phase(): string {
    return this.front.state.phase.name;
  }

  #record(actions: A[]): void {
    for (const a of actions) {
      // The password travels as a Secret; tests compare it as text.
      const password = 'password' in a && a.password instanceof Secret ? a.password.reveal() : undefined;
      this.actions.push(password === undefined ? a : ({ ...a, password } as A));
      if (a.type === 'send' && 'reply' in a) this.wire += `${a.reply}\r\n`;
    }
  }
}

/** Splits `data` at the cut points (each taken modulo the length + 1). */
export function splitAt(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    parts.push(data.subarray(prev, p));
    prev = p;
  }
  parts.push(data.subarray(prev));
  return parts;
}

/**
 * Feeds the chunks, answering async actions like a session would: TLS always succeeds, logins fail
 * (bad credentials) until the `succeedOn`-th attempt, which gets `succeeded`. Returns a full trace.
 */
export function converse<A extends AnyAction, E, F extends LineFront<A, E>>(
  h: FrontHarness<A, E, F>,
  chunks: Buffer[],
  succeedOn: number,
  succeeded: E,
): { wire: string; actions: A[]; phase: string; remainder: string } {
  let attempts = 0;
  const settle = (): void => {
    for (let i = 0; i < 1000; i++) {
      const last = h.actions[h.actions.length - 1];
      if (h.phase === 'starting-tls' && last?.type === 'start-tls') h.resolve({ type: 'tls-ready' } as E);
      else if (h.phase === 'authenticating') {
        attempts += 1;
        h.resolve(
          attempts === succeedOn
            ? succeeded
            : ({ type: 'auth-failed', error: new ProxyError('bad-credentials', 'no') } as E),
        );
      } else break;
    }
  };
  // Once the relay runs, the session forwards socket bytes itself, after the framer's remainder.
  let relayed: Buffer[] | undefined;
  for (const c of chunks) {
    if (relayed) relayed.push(c);
    else h.send(c);
    settle();
    if (!relayed && h.phase === 'relay') relayed = [h.front.takeRemainder()];
  }
  const remainder = relayed ? Buffer.concat(relayed).toString(h.encoding) : '';
  return { wire: h.wire, actions: h.actions, phase: h.phase, remainder };
}

export const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
export const plain = (user: string, pass: string, authzid = ''): string =>
  b64(`${authzid}\0${user}\0${pass}`);

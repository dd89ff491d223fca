/**
 * Drives the real ImapFront as the session does, without sockets: feed chunks, resolve
 * `authenticate` actions from a script, complete STARTTLS at once, and stop at `start-relay`.
 */
import type { TlsMode } from '../../../src/config/types.js';
import { ProxyError, type ProxyErrorCode } from '../../../src/errors.js';
import { ImapFront } from '../../../src/proxy/imap/front.js';
import type { Action, State } from '../../../src/proxy/imap/machine.js';
import type { FrontEvent } from '../../../src/proxy/shared/front.js';
import { frontLimits, type FrontLimits } from '../../../src/proxy/shared/limits.js';

export type LoginScript = (
  username: string,
  password: string,
) =>
  { ok: true; capabilities?: string } | { ok: false; code: ProxyErrorCode; detail?: string; hint?: string };

export interface Replay {
  /** Everything sent to the client, as on the wire. */
  output: string;
  logins: { username: string; password: string }[];
  actions: Action[];
  state: State;
  /** Client bytes handed to the relay (pipelined after the login). */
  relayed: Buffer | undefined;
  tlsStarted: number;
  closed: boolean;
}

export function replay(
  chunks: (string | Buffer)[],
  options: { tls?: TlsMode; secure?: boolean; limits?: Partial<FrontLimits>; login?: LoginScript } = {},
): Replay {
  const limits = { ...frontLimits(), ...options.limits };
  const config = {
    tls: options.tls ?? 'none',
    maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
    maxFailedLogins: limits.maxFailedLogins,
  };
  const front = new ImapFront(config, limits, options.secure ?? options.tls === 'implicit');
  const login: LoginScript = options.login ?? (() => ({ ok: true, capabilities: 'IMAP4rev1 IDLE' }));
  const result: Replay = {
    output: '',
    logins: [],
    actions: [],
    state: front.state,
    relayed: undefined,
    tlsStarted: 0,
    closed: false,
  };
  const queue: FrontEvent[] = [];
  const perform = (actions: Action[]): void => {
    for (const a of actions) {
      result.actions.push(a);
      switch (a.type) {
        case 'send':
          result.output += `${a.reply}\r\n`;
          break;
        case 'authenticate': {
          const password = a.password.reveal();
          result.logins.push({ username: a.username, password });
          const outcome = login(a.username, password);
          queue.push(
            outcome.ok
              ? {
                  type: 'auth-succeeded',
                  ...(outcome.capabilities ? { capabilities: outcome.capabilities } : {}),
                }
              : {
                  type: 'auth-failed',
                  error: new ProxyError(
                    outcome.code,
                    'scripted',
                    outcome.detail ? { detail: outcome.detail } : undefined,
                  ),
                  ...(outcome.hint ? { consentHint: outcome.hint } : {}),
                },
          );
          break;
        }
        case 'start-tls':
          result.tlsStarted += 1;
          queue.push({ type: 'tls-ready' });
          break;
        case 'start-relay':
          result.relayed = front.takeRemainder();
          break;
        case 'close':
          result.closed = true;
          break;
      }
    }
  };
  const settle = (): void => {
    for (let guard = 0; guard < 100_000; guard++) {
      const queued = queue.shift();
      if (!queued) return;
      perform(front.resolve(queued));
    }
    throw new Error('front did not settle');
  };
  perform(front.start());
  const later: Buffer[] = [];
  for (const chunk of chunks) {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, 'utf8');
    if (result.closed) break;
    // After the relay started, the session no longer reads: later bytes go to the relay as they come.
    if (result.relayed) {
      later.push(bytes);
      continue;
    }
    perform(front.receive(bytes));
    settle();
  }
  if (result.relayed) result.relayed = Buffer.concat([result.relayed, ...later]);
  result.state = front.state;
  return result;
}

/** Splits `text` into chunks at the given cut points. */
export function splitAt(text: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.max(0, Math.min(text.length, c))))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(text.subarray(last, p));
    last = p;
  }
  out.push(text.subarray(last));
  return out;
}

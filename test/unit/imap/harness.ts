/**
 * Drives framer + machine exactly as the session does, without sockets: feed chunks, pump frames
 * while the machine reads, resolve `login` actions from a script, complete STARTTLS at once
 * (discarding buffered bytes, as the session does), and stop at `start-relay`.
 */
import type { TlsMode } from '../../../src/config/types.js';
import { ProxyError, type ProxyErrorCode } from '../../../src/errors.js';
import { ImapFramer } from '../../../src/proxy/imap/framer.js';
import { DEFAULT_IMAP_LIMITS, type ImapLimits } from '../../../src/proxy/imap/limits.js';
import {
  initialState,
  isReading,
  step,
  type Action,
  type Event,
  type State,
} from '../../../src/proxy/imap/machine.js';

export type LoginScript = (
  username: string,
  password: string,
) =>
  { ok: true; capabilities?: string } | { ok: false; code: ProxyErrorCode; detail?: string; hint?: string };

export interface Replay {
  /** Everything sent to the client, concatenated. */
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
  options: { tls?: TlsMode; secure?: boolean; limits?: Partial<ImapLimits>; login?: LoginScript } = {},
): Replay {
  const limits = { ...DEFAULT_IMAP_LIMITS, ...options.limits };
  const config = {
    tls: options.tls ?? 'none',
    maxCommandsBeforeLogin: limits.maxCommandsBeforeLogin,
    maxFailedLogins: limits.maxFailedLogins,
  };
  const framer = new ImapFramer(limits);
  const login: LoginScript = options.login ?? (() => ({ ok: true, capabilities: 'IMAP4rev1 IDLE' }));
  const result: Replay = {
    output: '',
    logins: [],
    actions: [],
    state: undefined as unknown as State,
    relayed: undefined,
    tlsStarted: 0,
    closed: false,
  };
  const first = initialState(config, options.secure ?? options.tls === 'implicit');
  let state = first.state;
  const queue: Event[] = [];
  const perform = (actions: Action[]): void => {
    for (const a of actions) {
      result.actions.push(a);
      switch (a.type) {
        case 'send':
          result.output += a.text;
          break;
        case 'login': {
          const password = a.password.reveal();
          result.logins.push({ username: a.username, password });
          const outcome = login(a.username, password);
          queue.push(
            outcome.ok
              ? {
                  type: 'login-succeeded',
                  ...(outcome.capabilities ? { capabilities: outcome.capabilities } : {}),
                }
              : {
                  type: 'login-failed',
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
          framer.takeRemainder();
          result.tlsStarted += 1;
          queue.push({ type: 'tls-started' });
          break;
        case 'start-relay':
          result.relayed = framer.takeRemainder();
          break;
        case 'close':
          result.closed = true;
          break;
      }
    }
  };
  const apply = (event: Event): void => {
    const r = step(config, state, event);
    state = r.state;
    perform(r.actions);
  };
  perform(first.actions);
  const pump = (): void => {
    for (let guard = 0; guard < 100_000; guard++) {
      const queued = queue.shift();
      if (queued) {
        apply(queued);
        continue;
      }
      if (!isReading(state.phase)) return;
      const ev = framer.next();
      if (!ev) return;
      apply(
        ev.type === 'frame'
          ? { type: 'frame', frame: ev.frame }
          : ev.type === 'continue'
            ? { type: 'continue-literal' }
            : { type: 'framing-error', kind: ev.kind },
      );
    }
    throw new Error('pump did not settle');
  };
  const later: Buffer[] = [];
  for (const chunk of chunks) {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, 'utf8');
    if (result.closed) break;
    // After the relay started, the session no longer reads: later bytes go to the relay as they come.
    if (result.relayed) {
      later.push(bytes);
      continue;
    }
    framer.push(bytes);
    pump();
  }
  if (result.relayed) result.relayed = Buffer.concat([result.relayed, ...later]);
  result.state = state;
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

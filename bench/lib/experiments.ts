/**
 * Proposed fixes, tried out in the proxy child without touching src/ (`--experiment <name>`), so the
 * bench can show what they are worth before the owners apply them for real.
 *
 * - `cached-upstream-context`: until commit 200cc2e, src/proxy/shared/tls-context.ts
 *   `upstreamTlsOptions()` passed `ca: [...rootCertificates, ca]` to every `tls.connect()`, so Node
 *   built a new SecureContext (an X509 store parsed from 144 PEM roots) per upstream connection. This
 *   patch hands `tls.connect` one cached SecureContext per distinct CA list instead (what 200cc2e
 *   does; a no-op on trees that have it).
 * - `upstream-session-resumption` (implies the cached context): keeps the last TLS session ticket per
 *   upstream and offers it on the next connection, so a login resumes instead of verifying the
 *   certificate chain and signature again.
 * - `single-flight-credentials` (landed for real in af4fcc4): concurrent logins with the same username and password share one
 *   `authenticator.verify()` (one scrypt), as a fix in LocalAuthenticator/CredentialCache would.
 */
import crypto, { createHash } from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import tls from 'node:tls';
import type { Authenticator, LoginAttempt } from '../../src/credentials/types.js';
import type { ResolvedAccount } from '../../src/config/types.js';

export const EXPERIMENTS = [
  'cached-upstream-context',
  'upstream-session-resumption',
  'single-flight-credentials',
] as const;
export type Experiment = (typeof EXPERIMENTS)[number];

/** Upstream handshakes seen by the resumption experiment. */
export const upstreamTlsStats = { full: 0, resumed: 0 };

export function patchUpstreamTls(mode: { cacheContexts: boolean; resumeSessions: boolean }): void {
  const original = tls.connect as (...a: unknown[]) => tls.TLSSocket;
  const contexts = new Map<string, tls.SecureContext>();
  /** Last TLS session ticket per upstream host:port (resumption skips the certificate checks). */
  const sessions = new Map<string, Buffer>();
  const patched = ((...args: unknown[]) => {
    const first = args[0];
    // Only option-object calls that name a port are upstream connects (the proxy makes no others).
    if (typeof first !== 'object' || first === null || (first as tls.ConnectionOptions).port === undefined) {
      return original(...args);
    }
    let options = first as tls.ConnectionOptions;
    if (mode.cacheContexts && Array.isArray(options.ca)) {
      const { ca, minVersion, ...rest } = options;
      // The roots are the same array contents every time; the connection's own CA (last) tells
      // connections apart. A string key costs a hash lookup, not a parse.
      const list = ca as string[];
      const key = `${minVersion ?? ''}|${list.length}|${list[list.length - 1] ?? ''}`;
      let secureContext = contexts.get(key);
      if (!secureContext) {
        secureContext = tls.createSecureContext({ ca: list, ...(minVersion ? { minVersion } : {}) });
        contexts.set(key, secureContext);
      }
      options = { ...rest, secureContext };
    }
    if (!mode.resumeSessions) return original(options, ...args.slice(1));
    const target = `${options.host ?? ''}:${options.port ?? ''}`;
    const session = sessions.get(target);
    const socket = original(session ? { ...options, session } : options, ...args.slice(1));
    socket.on('session', (s: Buffer) => sessions.set(target, s));
    socket.once('secureConnect', () => {
      if (socket.isSessionReused()) upstreamTlsStats.resumed += 1;
      else upstreamTlsStats.full += 1;
    });
    return socket;
  }) as typeof tls.connect;
  tls.connect = patched;
  // ESM named imports of builtins (`import { connect } from 'node:tls'`) follow this call.
  syncBuiltinESMExports();
}

export class SingleFlightAuthenticator implements Authenticator {
  readonly #inner: Authenticator;
  readonly #inflight = new Map<string, Promise<ResolvedAccount>>();
  constructor(inner: Authenticator) {
    this.#inner = inner;
  }
  verify(attempt: LoginAttempt): Promise<ResolvedAccount> {
    const key = createHash('sha256')
      .update(JSON.stringify([attempt.username.toLowerCase(), attempt.password]))
      .digest('base64');
    const running = this.#inflight.get(key);
    if (running) return running;
    const p = this.#inner.verify(attempt).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }
}

/** Counts `crypto.scrypt` calls (password checks) in this process; ESM importers see the wrapper too. */
export function countScrypt(): { readonly calls: number } {
  const counter = { calls: 0 };
  const original = crypto.scrypt;
  crypto.scrypt = ((...args: Parameters<typeof crypto.scrypt>) => {
    counter.calls += 1;
    return (original as (...a: unknown[]) => void)(...args);
  }) as typeof crypto.scrypt;
  syncBuiltinESMExports();
  return counter;
}

/**
 * Proposed fixes, tried out in the proxy child without touching src/ (`--experiment <name>`), so the
 * bench can show what they are worth before the owners apply them for real.
 *
 * - `cached-upstream-context`: src/proxy/shared/tls-context.ts `upstreamTlsOptions()` passes
 *   `ca: [...rootCertificates, ca]` to every `tls.connect()`, so Node builds a new SecureContext (an
 *   X509_STORE parsed from ~140 PEM roots) per upstream connection. This patch hands `tls.connect` one
 *   cached SecureContext per distinct CA list instead, which is what the fix in tls-context.ts would do.
 * - `upstream-session-resumption` (implies the cached context): keeps the last TLS session ticket per
 *   upstream and offers it on the next connection, so a login resumes instead of verifying the
 *   certificate chain and signature again.
 * - `single-flight-credentials`: concurrent logins with the same username and password share one
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

export function cacheUpstreamContexts(mode: { resumeSessions: boolean }): void {
  const original = tls.connect;
  const contexts = new Map<string, tls.SecureContext>();
  /** Last TLS session ticket per upstream host:port (resumption skips the certificate checks). */
  const sessions = new Map<string, Buffer>();
  const patched = ((...args: unknown[]) => {
    const options = args[0];
    if (
      typeof options === 'object' &&
      options !== null &&
      Array.isArray((options as tls.ConnectionOptions).ca)
    ) {
      const { ca, minVersion, ...rest } = options as tls.ConnectionOptions;
      // The roots are the same array contents every time; the connection's own CA (last) tells
      // connections apart. A string key costs a hash lookup, not a parse.
      const list = ca as string[];
      const key = `${minVersion ?? ''}|${list.length}|${list[list.length - 1] ?? ''}`;
      let secureContext = contexts.get(key);
      if (!secureContext) {
        secureContext = tls.createSecureContext({
          ca: ca as string[],
          ...(minVersion ? { minVersion } : {}),
        });
        contexts.set(key, secureContext);
      }
      const target = `${rest.host ?? ''}:${rest.port ?? ''}`;
      const session = mode.resumeSessions ? sessions.get(target) : undefined;
      args[0] = { ...rest, secureContext, ...(session ? { session } : {}) };
      const socket = (original as (...a: unknown[]) => tls.TLSSocket)(...args);
      if (mode.resumeSessions) socket.on('session', (s: Buffer) => sessions.set(target, s));
      return socket;
    }
    return (original as (...a: unknown[]) => tls.TLSSocket)(...args);
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

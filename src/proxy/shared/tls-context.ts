/**
 * TLS settings for both legs, in one place so that "upstream is always verified" is visible at a glance.
 */
import { isIP } from 'node:net';
import {
  createSecureContext,
  rootCertificates,
  type ConnectionOptions,
  type SecureContext,
  type SecureContextOptions,
} from 'node:tls';
import type { ListenerConfig } from '../../config/types.js';

/**
 * The client-facing TLS context of a listener. TLS 1.2 is the floor unless the listener explicitly
 * lowers it for old devices; then OpenSSL 3's security level must drop too, or TLS 1.0/1.1 handshakes
 * fail despite minVersion (their SHA-1 signatures are below level 1).
 */
export function localTlsOptions(listener: ListenerConfig): SecureContextOptions {
  if (!listener.cert || !listener.key) {
    throw new Error(
      `listener ${listener.host}:${listener.port} needs a TLS cert and key (tls: ${listener.tls})`,
    );
  }
  const minVersion = listener.minVersion ?? 'TLSv1.2';
  const legacy = minVersion === 'TLSv1' || minVersion === 'TLSv1.1';
  return {
    cert: listener.cert,
    key: listener.key,
    minVersion,
    ...(legacy ? { ciphers: 'DEFAULT@SECLEVEL=0' } : {}),
  };
}

/** The same settings as a ready context, for STARTTLS upgrades. */
export function createLocalSecureContext(listener: ListenerConfig): SecureContext {
  return createSecureContext(localTlsOptions(listener));
}

/**
 * Upstream contexts, one per distinct extra CA. Building a context with the whole system root store
 * costs ~100 ms of main-thread CPU, so doing it per connection would stall every other session while
 * a burst of clients logs in. The set of CAs comes from the config, so the map stays small.
 */
const upstreamContexts = new Map<string, SecureContext>();

function upstreamSecureContext(ca: string | undefined): SecureContext {
  const key = ca ?? '';
  let context = upstreamContexts.get(key);
  if (!context) {
    context = createSecureContext({
      minVersion: 'TLSv1.2',
      ...(ca ? { ca: [...rootCertificates, ca] } : {}),
    });
    upstreamContexts.set(key, context);
  }
  return context;
}

/**
 * Options for connecting to an upstream mail server: the system CAs plus the connection's own `ca`
 * (never instead of them), SNI = host name (RFC 6066 forbids IP literals there, so none for those),
 * identity checked against the host. There is deliberately no way to turn verification off.
 */
export function upstreamTlsOptions(host: string, ca: string | undefined): ConnectionOptions {
  return {
    host,
    ...(isIP(host) === 0 ? { servername: host } : {}),
    secureContext: upstreamSecureContext(ca),
    minVersion: 'TLSv1.2',
    rejectUnauthorized: true,
  };
}

/**
 * `upstreamTlsOptions` for a client library (imapflow, nodemailer) that sets the host and SNI itself
 * from its own `host` option: everything but `host` and `servername`.
 */
export function upstreamTlsOptionsForLibrary(host: string, ca: string | undefined): ConnectionOptions {
  const { host: _host, servername: _servername, ...tls } = upstreamTlsOptions(host, ca);
  return tls;
}

import type { Config } from './types.js';

export const CALLBACK_PATH = '/oauth/callback';

/**
 * The public base URL of the HTTP listener (no trailing slash): `http.publicUrl`, else
 * `http://localhost:<port>` (https for a TLS listener) — "localhost" rather than 127.0.0.1 because Microsoft only allows plain
 * http redirect URIs for localhost (and ignores the port there).
 */
export function publicBaseUrl(config: Config, boundPort?: number): string {
  if (config.http.publicUrl) return config.http.publicUrl.replace(/\/+$/, '');
  const listener = config.listen.http[0];
  const scheme = listener?.tls === 'implicit' ? 'https' : 'http';
  const port = boundPort ?? listener?.port;
  return port === undefined ? `${scheme}://localhost` : `${scheme}://localhost:${port}`;
}

export function redirectUri(baseUrl: string): string {
  return `${baseUrl}${CALLBACK_PATH}`;
}

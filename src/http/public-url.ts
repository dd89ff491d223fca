import type { Config } from '../config/types.js';

export const CALLBACK_PATH = '/oauth/callback';

/**
 * The public base URL of the HTTP listener (no trailing slash): `http.publicUrl`, else
 * `http://localhost:<port>` — "localhost" rather than 127.0.0.1 because Microsoft only allows plain
 * http redirect URIs for localhost (and ignores the port there).
 */
export function publicBaseUrl(config: Config, boundPort?: number): string {
  if (config.http.publicUrl) return config.http.publicUrl.replace(/\/+$/, '');
  const port = boundPort ?? config.listen.http[0]?.port;
  return port === undefined ? 'http://localhost' : `http://localhost:${port}`;
}

export function redirectUri(baseUrl: string): string {
  return `${baseUrl}${CALLBACK_PATH}`;
}

/**
 * The two ways an authorization redirect reaches the consent CLI: a loopback HTTP listener (RFC 8252
 * §7.3, the browser is on this machine) or the redirect URL pasted into the terminal (the browser is
 * elsewhere, its request to 127.0.0.1 failed, and the user copies the address bar).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import type { ProviderKind } from '../../config/types.js';
import { ProxyError } from '../../errors.js';

export type RedirectOutcome = { code: string } | { error: string; description?: string };

/**
 * Microsoft ignores the port of `http://localhost` redirect URIs (register `http://localhost` once)
 * but refuses 127.0.0.1 unless it is added through the manifest; Google desktop clients accept any
 * loopback IP and port without registration and recommend the IP over "localhost".
 */
export function loopbackHost(provider: ProviderKind): 'localhost' | '127.0.0.1' {
  return provider === 'microsoft' ? 'localhost' : '127.0.0.1';
}

/**
 * Reads a redirect URL (or just its query) and checks its state. Undefined when the text is not a
 * redirect at all; a ProxyError when it is one for another attempt.
 */
export function parseRedirect(text: string, expectedState: string): RedirectOutcome | undefined {
  const trimmed = text.trim();
  if (!trimmed.includes('code=') && !trimmed.includes('error=')) return undefined;
  let params: URLSearchParams;
  try {
    params = new URL(trimmed).searchParams;
  } catch {
    params = new URLSearchParams(trimmed.slice(trimmed.indexOf('?') + 1));
  }
  const error = params.get('error');
  const code = params.get('code');
  if (!error && !code) return undefined;
  if (params.get('state') !== expectedState) {
    throw new ProxyError(
      'needs-consent',
      'That redirect belongs to another consent attempt (its state does not match); use the URL of this one.',
    );
  }
  if (error) {
    const description = params.get('error_description');
    return description ? { error, description } : { error };
  }
  return { code: code! };
}

export interface LoopbackReceiver {
  readonly redirectUri: string;
  readonly port: number;
  /** Resolves with the first redirect carrying the right state. */
  readonly result: Promise<RedirectOutcome>;
  close(): Promise<void>;
}

function page(title: string, text: string): string {
  const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html><meta charset="utf-8"><title>${esc(title)}</title><body style="font-family:sans-serif;max-width:40em;margin:3em auto"><h1>${esc(title)}</h1><p>${esc(text)}</p></body>`;
}

export async function startLoopbackReceiver(options: {
  provider: ProviderKind;
  state: string;
  port?: number;
}): Promise<LoopbackReceiver> {
  let settle!: (outcome: RedirectOutcome) => void;
  const result = new Promise<RedirectOutcome>((resolve) => (settle = resolve));
  const handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    let outcome: RedirectOutcome | undefined;
    try {
      outcome =
        req.method === 'GET' && url.pathname === '/' ? parseRedirect(url.search, options.state) : undefined;
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page('Wrong consent attempt', (err as Error).message));
      return;
    }
    if (!outcome) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(
      'code' in outcome
        ? page(
            'Consent received',
            'xoauth-proxy got the answer. You can close this tab and return to the terminal.',
          )
        : page('Consent not given', `The provider answered: ${outcome.error}. See the terminal.`),
    );
    settle(outcome);
  };
  const servers: Server[] = [];
  const listen = (host: string, port: number) =>
    new Promise<Server>((resolve, reject) => {
      const server = createServer(handler);
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve(server);
      });
    });
  let first: Server;
  try {
    first = await listen('127.0.0.1', options.port ?? 0);
  } catch (err) {
    throw new ProxyError(
      'config',
      `Cannot listen on 127.0.0.1:${options.port ?? 0} for the consent redirect: ${(err as Error).message}. ` +
        'Choose another --port.',
      { cause: err },
    );
  }
  servers.push(first);
  const port = (first.address() as AddressInfo).port;
  const host = loopbackHost(options.provider);
  if (host === 'localhost') {
    // Browsers may resolve localhost to ::1 first; answer there too when the system has IPv6.
    try {
      servers.push(await listen('::1', port));
    } catch {
      // No IPv6 loopback (or the port is taken there): 127.0.0.1 alone has to do.
    }
  }
  return {
    redirectUri: `http://${host}:${port}/`,
    port,
    result,
    async close() {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      );
    },
  };
}

/**
 * Watches `input` for a pasted redirect URL. Lines that are not one are ignored; one for another
 * attempt is reported through `onWrongState` and waiting goes on.
 */
export function watchPastedRedirect(
  input: NodeJS.ReadableStream,
  state: string,
  onWrongState: (message: string) => void,
): { result: Promise<RedirectOutcome>; close(): void } {
  const rl = createInterface({ input, terminal: false });
  const result = new Promise<RedirectOutcome>((resolve) => {
    rl.on('line', (line) => {
      try {
        const outcome = parseRedirect(line, state);
        if (outcome) resolve(outcome);
      } catch (err) {
        onWrongState((err as Error).message);
      }
    });
  });
  return { result, close: () => rl.close() };
}

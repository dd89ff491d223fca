import { html, type HtmlValue, type SafeHtml } from './html.js';

export const PRODUCT_NAME = 'Mail access';

export interface PageOptions {
  title: string;
  body: HtmlValue;
  /** Wider main column (admin tables). */
  wide?: boolean;
  /** Seconds; for the device-code page, which waits for the provider without any script. */
  refreshSeconds?: number;
}

/** The page frame shared by every page. No scripts at all; the CSS comes from /assets/style.css. */
export function layout(options: PageOptions): SafeHtml {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="robots" content="noindex, nofollow" />
        ${options.refreshSeconds === undefined ? '' : html`<meta http-equiv="refresh" content="${options.refreshSeconds}" />`}
        <title>${options.title} · ${PRODUCT_NAME}</title>
        <link rel="stylesheet" href="/assets/style.css" />
      </head>
      <body>
        <header class="site">
          <div class="inner${options.wide ? ' wide' : ''}">
            <span class="logo" aria-hidden="true">@</span><span class="name">${PRODUCT_NAME}</span>
          </div>
        </header>
        <main class="${options.wide ? 'wide' : ''}">${options.body}</main>
        <footer class="site${options.wide ? ' wide' : ''}">
          xoauth-proxy · lets your mail program reach your mailbox safely
        </footer>
      </body>
    </html> `;
}

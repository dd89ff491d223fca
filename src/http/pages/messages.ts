/**
 * Every "something went wrong" page: what happened, in plain words, and what to do next.
 */
import { html, type HtmlValue, type SafeHtml } from '../html.js';
import { layout } from '../layout.js';
import { formatTime } from './format.js';

export interface MessagePage {
  status: number;
  title: string;
  tone: 'bad' | 'warn' | 'ok';
  what: HtmlValue;
  todo: HtmlValue;
  /** Extra markup below (e.g. a "start again" button). */
  extra?: HtmlValue;
}

// Plain characters in a coloured circle: emoji fonts are missing on many servers' and users' systems.
const ICONS = { bad: '!', warn: 'i', ok: '✓' } as const;

export function messagePage(page: MessagePage): SafeHtml {
  return layout({
    title: page.title,
    body: html`<div class="card" role="${page.tone === 'ok' ? 'status' : 'alert'}">
      <div class="icon ${page.tone}" aria-hidden="true">${ICONS[page.tone]}</div>
      <h1>${page.title}</h1>
      <p class="lead">${page.what}</p>
      <h2>What to do</h2>
      <p>${page.todo}</p>
      ${page.extra ?? ''}
    </div>`,
  });
}

export const pages = {
  notFound(): MessagePage {
    return {
      status: 404,
      title: 'Page not found',
      tone: 'bad',
      what: 'There is nothing at this address.',
      todo: 'If you were sent a link to connect your mailbox, open it straight from the message, in full.',
    };
  },

  badLink(): MessagePage {
    return {
      status: 404,
      title: 'This link does not work',
      tone: 'bad',
      what: 'The link is not valid. It may have been cut off or changed when it was copied.',
      todo:
        'Open the link straight from the message you received, or copy all of it. ' +
        'If it still does not work, ask your administrator for a new link.',
    };
  },

  usedLink(usedAt: number | undefined): MessagePage {
    return {
      status: 410,
      title: 'This link has already been used',
      tone: 'warn',
      what: html`Each link works only once, and this one was used on ${formatTime(usedAt)}.`,
      todo:
        'If your mail program works, there is nothing more to do. ' +
        'If you need to grant access again, ask your administrator for a new link.',
    };
  },

  expiredLink(expiresAt: number): MessagePage {
    return {
      status: 410,
      title: 'This link has expired',
      tone: 'warn',
      what: html`The link was valid until ${formatTime(expiresAt)}. Links expire so that an old message cannot
      be misused.`,
      todo: 'Ask your administrator for a new link.',
    };
  },

  stateMismatch(): MessagePage {
    return {
      status: 400,
      title: 'This sign-in could not be matched',
      tone: 'bad',
      what:
        'The answer from the sign-in page does not belong to a sign-in started in this browser, ' +
        'or the sign-in took longer than 15 minutes. Nothing was changed.',
      todo: 'Open your link again and start over, in the same browser.',
    };
  },

  cookiesNeeded(): MessagePage {
    return {
      status: 400,
      title: 'Please allow cookies for this page',
      tone: 'bad',
      what:
        'This page uses one small cookie to make sure the sign-in that comes back is the one you started. ' +
        'Your browser did not send it.',
      todo: 'Allow cookies for this site (or leave private mode), then open your link again.',
    };
  },

  accessDenied(provider: string, linkExpiresAt: number | undefined): MessagePage {
    return {
      status: 403,
      title: 'Access was not granted',
      tone: 'warn',
      what: html`You chose not to allow access at ${provider}, so nothing was changed.`,
      todo: html`To connect the mailbox, open your link again and choose
      “Allow”.${
        linkExpiresAt === undefined ? '' : html` The link still works until ${formatTime(linkExpiresAt)}.`
      }`,
    };
  },

  invalidScope(provider: string): MessagePage {
    return {
      status: 502,
      title: 'The permission could not be requested',
      tone: 'bad',
      what: html`${provider} refused the mail permission this server asks for (invalid_scope). This is a
      setting, not something you did.`,
      todo: 'Tell your administrator: the app registration must allow the mail scope, or the connection asks for the wrong one.',
    };
  },

  providerError(provider: string, code: string): MessagePage {
    return {
      status: 502,
      title: 'Sign-in did not complete',
      tone: 'bad',
      what: html`${provider} stopped the sign-in and reported “${code}”. Nothing was changed.`,
      todo: 'Open your link again to retry. If the same message comes back, tell your administrator what it says.',
    };
  },

  exchangeFailed(provider: string, detail: string): MessagePage {
    return {
      status: 502,
      title: 'Could not finish connecting',
      tone: 'bad',
      what: html`You signed in, but this server could not collect the permission from ${provider} (${detail}).
      Nothing was saved.`,
      todo: 'Open your link again in a few minutes; it still works. If it keeps failing, tell your administrator.',
    };
  },

  identityMismatch(provider: string, signedInAs: string, expected: string): MessagePage {
    return {
      status: 403,
      title: 'You signed in with a different account',
      tone: 'bad',
      what: html`You signed in at ${provider} as <strong>${signedInAs}</strong>, but this link is for
        <strong>${expected}</strong>. Nothing was saved.`,
      todo: html`Open your link again and, at ${provider}, sign in as <strong>${expected}</strong>. You may
        have to sign out of ${signedInAs} first, or use a private window.`,
    };
  },

  accountGone(username: string): MessagePage {
    return {
      status: 404,
      title: 'This mailbox is not set up here any more',
      tone: 'bad',
      what: html`The link is for ${username}, which this server no longer knows about.`,
      todo: 'Ask your administrator to check the configuration and send you a new link.',
    };
  },

  noConsentNeeded(username: string): MessagePage {
    return {
      status: 410,
      title: 'No sign-in needed',
      tone: 'ok',
      what: html`${username} now uses an app-only connection: the server has access without anyone signing in.`,
      todo: 'Nothing to do. If your mail program has trouble, tell your administrator.',
    };
  },

  alreadyDone(email: string): MessagePage {
    return {
      status: 200,
      title: 'You are all set',
      tone: 'ok',
      what: html`${email} is connected. This page was already shown once.`,
      todo:
        'Nothing more to do. A new app password is shown only on the first visit: if you did not note it, ' +
        'ask your administrator for a new one.',
    };
  },

  deviceFailed(provider: string, reason: string): MessagePage {
    return {
      status: 400,
      title: 'Sign-in with a code did not complete',
      tone: 'warn',
      what: html`${provider} reported: ${reason}. Nothing was changed.`,
      todo: 'Open your link again and start over; you will get a new code.',
    };
  },

  deviceReplaced(): MessagePage {
    return {
      status: 409,
      title: 'This code no longer works',
      tone: 'warn',
      what: 'A newer code was requested for the same link. Only the newest code works.',
      todo: 'Use the newest code, or open your link again here to get a new one.',
    };
  },

  deviceUnavailable(): MessagePage {
    return {
      status: 400,
      title: 'Sign-in with a code is not available',
      tone: 'bad',
      what: 'This mailbox cannot be connected with a code.',
      todo: 'Open your link again and use the sign-in button.',
    };
  },

  methodNotAllowed(): MessagePage {
    return {
      status: 405,
      title: 'That did not work',
      tone: 'bad',
      what: 'This address does not accept that kind of request.',
      todo: 'Go back and use the buttons on the page.',
    };
  },

  formExpired(): MessagePage {
    return {
      status: 403,
      title: 'The form has expired',
      tone: 'bad',
      what: 'The button you pressed belongs to a page that is too old, or to another browser.',
      todo: 'Go back, reload the page, and press the button again.',
    };
  },

  serverError(): MessagePage {
    return {
      status: 500,
      title: 'Something went wrong on our side',
      tone: 'bad',
      what: 'The server ran into an unexpected problem. Nothing was changed.',
      todo: 'Try again in a few minutes. If it keeps happening, tell your administrator.',
    };
  },
};

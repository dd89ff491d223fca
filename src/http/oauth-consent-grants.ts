/**
 * The consent pages' view of the OAuth core: authorization code with PKCE, device code, identity
 * check and storing the tokens, all done by src/oauth; this file only adapts the shapes.
 */
import type { ResolvedAccount, Settings } from '../config/types.js';
import { createAuthorizationRequest, exchangeAuthorizationCode } from '../oauth/grants/authorization-code.js';
import { pollDeviceAuthorization, startDeviceAuthorization } from '../oauth/grants/device-code.js';
import { storeGrant } from '../oauth/grant-record.js';
import { checkIdentity, identityFromTokenSet } from '../oauth/grants/identity.js';
import type { ConsentIdentity, TokenRecord, TokenSet, Store } from '../oauth/types.js';

export type ConsentRecorder = (
  account: ResolvedAccount,
  tokenSet: TokenSet,
  identity: ConsentIdentity,
) => Promise<TokenRecord>;
import type { ConsentGrants, DeviceStart, GrantedIdentity, PendingGrant } from './consent-grants.js';

export function createOAuthGrants(options: {
  store: Store;
  settings: Pick<Settings, 'tokenRequestTimeoutMs'>;
  /**
   * The token manager's recordConsent, when there is one: it stores the grant, forgets earlier
   * failures and rejected tokens, and reports the `consented` event (which the notifier hears).
   */
  recordConsent?: ConsentRecorder;
  now?: () => number;
}): ConsentGrants {
  const { store } = options;
  const now = options.now ?? Date.now;
  const timeoutMs = options.settings.tokenRequestTimeoutMs;

  async function pendingGrant(account: ResolvedAccount, set: TokenSet): Promise<PendingGrant> {
    const identity = await identityFromTokenSet(account.connection, set, { timeoutMs });
    return {
      identity,
      save: async () => {
        if (options.recordConsent) await options.recordConsent(account, set, identity);
        else await storeGrant(store, account, set, identity, now());
      },
    };
  }

  return {
    startAuthorization(account, redirectUri) {
      return createAuthorizationRequest(account.connection, { redirectUri, loginHint: account.email });
    },
    async exchangeCode(account, params) {
      const set = await exchangeAuthorizationCode(account.connection, params, { timeoutMs, now });
      return pendingGrant(account, set);
    },
    identityAllowed(account, identity: GrantedIdentity) {
      try {
        checkIdentity(account, identity);
        return true;
      } catch {
        return false;
      }
    },
    async startDevice(account): Promise<DeviceStart> {
      const controller = new AbortController();
      const auth = await startDeviceAuthorization(account.connection, { timeoutMs });
      const result = pollDeviceAuthorization(account.connection, auth, {
        timeoutMs,
        signal: controller.signal,
      }).then((set) => pendingGrant(account, set));
      // The page polls our state, not this promise; keep a rejection from going unhandled.
      result.catch(() => undefined);
      return {
        userCode: auth.userCode,
        verificationUri: auth.verificationUri,
        expiresAt: auth.expiresAt,
        result,
        cancel: () => controller.abort(),
      };
    },
  };
}

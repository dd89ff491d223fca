/**
 * Shared proxy pieces, used as-is by the IMAP and SMTP (and later POP3) fronts.
 * See docs/imap.md "Shared pieces" for how a front puts them together.
 */
export { ProxyListener } from './listener.js';
export { upgradeToTls, type StartTlsResult } from './starttls.js';
export {
  createLocalSecureContext,
  localTlsOptions,
  upstreamTlsOptions,
  upstreamTlsOptionsForLibrary,
} from './tls-context.js';
export {
  connectUpstream,
  UpstreamConnection,
  KEEPALIVE_DELAY_MS,
  timedOutAfter,
  type ConnectUpstreamOptions,
  type UpstreamDialect,
} from './upstream.js';
export { startRelay, type Relay, type RelayOptions, type RelayResult } from './relay.js';
export {
  performLogin,
  type LoginDeps,
  type LoginRequest,
  type LoginResult,
  type UpstreamAuthOutcome,
  type UpstreamLogin,
} from './login.js';
export { logSessionEnd, formatAddress } from './session-log.js';
export { Secret } from './secret.js';
export {
  xoauth2Payload,
  oauthBearerPayload,
  mechanismName,
  errorChallengeResponse,
  decodeErrorChallenge,
  decodeBase64Strict,
  decodePlain,
  encodePlain,
  decodeLoginResponse,
  LOGIN_USERNAME_PROMPT,
  LOGIN_PASSWORD_PROMPT,
  type OAuthMechanism,
  type PlainCredentials,
  type SaslErrorChallenge,
} from './sasl.js';
export type * from './types.js';

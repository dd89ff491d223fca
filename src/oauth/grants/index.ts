export {
  codeChallengeS256,
  createAuthorizationRequest,
  createCodeVerifier,
  exchangeAuthorizationCode,
  type AuthorizationRequest,
} from './authorization-code.js';
export { clientCredentialsToken } from './client-credentials.js';
export {
  defaultSleep,
  DeviceFlowError,
  pollDeviceAuthorization,
  startDeviceAuthorization,
  type DeviceAuthorization,
  type DeviceFlowOptions,
} from './device-code.js';
export { checkIdentity, decodeJwtClaims, identityFromTokenSet, IdentityMismatchError } from './identity.js';
export { refreshAccessToken } from './refresh.js';
export {
  consentScopes,
  graphConsentScopes,
  graphTokenScopes,
  hasGraphConsent,
  scopesAfterRefresh,
} from './scopes.js';
export { serviceAccountAdvice, serviceAccountToken } from './service-account.js';
export { signClientAssertion, signServiceAccountAssertion } from './assertions.js';
export {
  classifyResponse,
  classifyTokenError,
  isClientError,
  isTransientStatus,
  TokenEndpointError,
  type TokenFailureKind,
} from './token-errors.js';
export { DEFAULT_TOKEN_REQUEST_TIMEOUT_MS, isPublicClient, type RequestOptions } from './token-response.js';

/**
 * Device authorization grant (RFC 8628), for Microsoft: the user enters a short code on another
 * device. Google refuses the Gmail scope on this flow, so it is Microsoft (or custom) only.
 *
 * Polling follows §3.5: wait `interval` between polls, add 5 s on `slow_down` (for good), keep polling
 * on `authorization_pending`, stop on `authorization_declined`, `expired_token` and Microsoft's
 * `bad_verification_code`. A network error or 5xx while polling is not the user's answer: wait and
 * poll again until the code expires. Sleep and clock are injectable so tests run in milliseconds.
 */
import type { ConnectionConfig } from '../../config/types.js';
import { ProxyError } from '../../errors.js';
import type { TokenSet } from '../types.js';
import { classifyTokenError, TokenEndpointError } from './token-errors.js';
import { DEFAULT_TOKEN_REQUEST_TIMEOUT_MS, postForm, toTokenSet } from './token-response.js';
import { consentScopes } from './scopes.js';

export const DEVICE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';
const DEFAULT_INTERVAL_S = 5;
const SLOW_DOWN_STEP_MS = 5000;

export interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  /** The provider's own instructions, when it sends them (Microsoft does). */
  message?: string;
  /** Epoch ms. */
  expiresAt: number;
  intervalMs: number;
}

export interface DeviceFlowOptions {
  timeoutMs?: number;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  signal?: AbortSignal;
  /** Called after each `authorization_pending` / `slow_down` answer. */
  onPoll?: (answer: 'authorization_pending' | 'slow_down' | 'transient-error', nextDelayMs: number) => void;
}

/** Why the device flow ended without tokens. `reason` is the OAuth error code. */
export class DeviceFlowError extends ProxyError {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super('needs-consent', message, { detail: reason });
    this.name = 'DeviceFlowError';
    this.reason = reason;
  }
}

export function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export async function startDeviceAuthorization(
  connection: ConnectionConfig,
  options: DeviceFlowOptions = {},
): Promise<DeviceAuthorization> {
  if (!connection.deviceCodeUrl) {
    throw new ProxyError(
      'config',
      `Connection ${connection.name} has no deviceCodeUrl; the device flow is available for Microsoft ` +
        `connections (Google does not allow the Gmail scope on it). Use consent without --device.`,
    );
  }
  const now = options.now ?? Date.now;
  const raw = await postForm(
    connection.deviceCodeUrl,
    connection,
    { scope: consentScopes(connection).join(' ') },
    { timeoutMs: options.timeoutMs ?? DEFAULT_TOKEN_REQUEST_TIMEOUT_MS },
  );
  const deviceCode = raw.device_code;
  const userCode = raw.user_code;
  // Microsoft's v1 endpoint said verification_url; RFC 8628 says verification_uri.
  const verificationUri = raw.verification_uri ?? raw.verification_url;
  if (typeof deviceCode !== 'string' || typeof userCode !== 'string' || typeof verificationUri !== 'string') {
    throw new TokenEndpointError('device authorization endpoint answered without device_code/user_code', {
      kind: 'permanent',
    });
  }
  const expiresIn = Number(raw.expires_in ?? 900);
  const interval = Number(raw.interval ?? DEFAULT_INTERVAL_S);
  const auth: DeviceAuthorization = {
    deviceCode,
    userCode,
    verificationUri,
    expiresAt: now() + (Number.isFinite(expiresIn) ? expiresIn : 900) * 1000,
    intervalMs: (Number.isFinite(interval) && interval > 0 ? interval : DEFAULT_INTERVAL_S) * 1000,
  };
  if (typeof raw.verification_uri_complete === 'string')
    auth.verificationUriComplete = raw.verification_uri_complete;
  if (typeof raw.message === 'string') auth.message = raw.message;
  return auth;
}

export async function pollDeviceAuthorization(
  connection: ConnectionConfig,
  auth: DeviceAuthorization,
  options: DeviceFlowOptions = {},
): Promise<TokenSet> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  let intervalMs = auth.intervalMs;
  // Bounded by the code's lifetime; the extra count bound guards against a clock that never moves.
  const maxPolls = Math.ceil((auth.expiresAt - now()) / Math.max(intervalMs, 1000)) + 100;
  for (let poll = 0; poll < maxPolls; poll++) {
    await sleep(intervalMs, options.signal);
    if (now() >= auth.expiresAt) break;
    try {
      const raw = await postForm(
        connection.tokenUrl,
        connection,
        { grant_type: DEVICE_GRANT_TYPE, device_code: auth.deviceCode },
        { timeoutMs: options.timeoutMs ?? DEFAULT_TOKEN_REQUEST_TIMEOUT_MS },
      );
      return toTokenSet(raw, connection.scopes, now());
    } catch (err) {
      const e = classifyTokenError(err);
      switch (e.oauthError) {
        case 'authorization_pending':
          options.onPoll?.('authorization_pending', intervalMs);
          continue;
        case 'slow_down':
          intervalMs += SLOW_DOWN_STEP_MS;
          options.onPoll?.('slow_down', intervalMs);
          continue;
        case 'authorization_declined':
        case 'access_denied':
          throw new DeviceFlowError(
            e.oauthError,
            'The sign-in was declined at the provider; nothing was stored.',
          );
        case 'expired_token':
          throw new DeviceFlowError(
            'expired_token',
            'The device code expired before the sign-in was finished.',
          );
        case 'bad_verification_code':
          throw new DeviceFlowError('bad_verification_code', 'The provider does not know this device code.');
      }
      if (e.kind === 'transient') {
        options.onPoll?.('transient-error', intervalMs);
        continue;
      }
      throw e;
    }
  }
  throw new DeviceFlowError('expired_token', 'The device code expired before the sign-in was finished.');
}

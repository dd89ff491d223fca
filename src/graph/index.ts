/** Sending through Microsoft Graph: what the SMTP front in Graph mode needs, and nothing else. */
export { createGraphSender, type GraphSenderOptions } from './sender.js';
export { GraphThrottle, type GraphThrottleOptions } from './throttle.js';
export { DEFAULT_MAX_MESSAGE_BYTES, GRAPH_MAX_REQUEST_BYTES } from './limits.js';
export type { MessageSender, OutgoingMessage, SendOutcome } from './types.js';

/** The account check behind `xoauth-proxy check` (see docs/check.md). */
export {
  buildReport,
  formatReport,
  ProtocolSelectionError,
  runChecks,
  scrub,
  selectProtocols,
  type CheckReport,
  type RunChecksOptions,
} from './run.js';
export { describeFailure } from './failure.js';
export { openCheckStore, RecordingTokens } from './tokens.js';
export type * from './types.js';

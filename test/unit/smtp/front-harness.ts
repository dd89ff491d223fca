/** Drives an SmtpFront like the session does, without sockets: replies are collected as text. */
import { SmtpFront } from '../../../src/proxy/smtp/front.js';
import type { SmtpAction, SmtpFrontConfig } from '../../../src/proxy/smtp/machine.js';
import type { BudgetShare } from '../../../src/proxy/shared/message-budget.js';
import { FrontHarness } from '../../helpers/front-harness.js';

export { b64, plain } from '../../helpers/front-harness.js';

export const CONFIG: SmtpFrontConfig = {
  serverName: 'proxy.test',
  tls: 'none',
  maxMessageSize: 36_700_160,
  upstream: { kind: 'fallback' },
  maxCommandsBeforeLogin: 20,
  maxFailedLogins: 3,
};

export class Harness extends FrontHarness<SmtpAction, Parameters<SmtpFront['resolve']>[0], SmtpFront> {
  constructor(config: Partial<SmtpFrontConfig> = {}, maxLineLength = 1000, budget?: BudgetShare) {
    super(new SmtpFront({ ...CONFIG, ...config }, maxLineLength, budget), 'latin1');
  }
}

/** Drives a Pop3Front like the session does, without sockets: replies are collected as wire text. */
import { Pop3Front } from '../../../src/proxy/pop3/front.js';
import type { FrontEvent } from '../../../src/proxy/shared/front.js';
import type { Pop3Action, Pop3FrontConfig } from '../../../src/proxy/pop3/machine.js';
import { FrontHarness } from '../../helpers/front-harness.js';

export { b64, plain } from '../../helpers/front-harness.js';

export const CONFIG: Pop3FrontConfig = {
  tls: 'none',
  maxCommandsBeforeLogin: 20,
  maxFailedLogins: 3,
  upstream: { kind: 'fallback' },
};

export class Harness extends FrontHarness<Pop3Action, FrontEvent, Pop3Front> {
  constructor(config: Partial<Pop3FrontConfig> = {}, maxLineLength = 1000) {
    // UTF-8: passwords are compared with a hash of their UTF-8 bytes.
    super(new Pop3Front({ ...CONFIG, ...config }, maxLineLength), 'utf8');
  }
}

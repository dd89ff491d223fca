/**
 * The SMTP front without I/O: line framer plus machine, driven by the shared Front. Lines are decoded
 * as latin1 so that no byte is lost before the parser sees it.
 */
import { Front } from '../shared/front.js';
import { SmtpLineFramer, type Frame } from './framer.js';
import {
  smtpMachine,
  type SmtpAction,
  type SmtpEvent,
  type SmtpFrontConfig,
  type SmtpState,
} from './machine.js';

export class SmtpFront extends Front<SmtpState, SmtpEvent, SmtpAction, Frame> {
  constructor(config: SmtpFrontConfig, maxLineLength: number) {
    super(smtpMachine(config), new SmtpLineFramer(maxLineLength), (frame) =>
      frame.type === 'line'
        ? { type: 'line', line: frame.line.toString('latin1') }
        : { type: 'line-too-long' },
    );
  }
}

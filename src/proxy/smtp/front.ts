/**
 * The SMTP front without I/O: framer plus machine, driven by the shared Front. Lines are decoded as
 * latin1 so that no byte is lost before the parser sees it; message content stays a Buffer.
 */
import { Front } from '../shared/front.js';
import { SmtpFramer, type Expect, type Frame } from './framer.js';
import {
  smtpMachine,
  type SmtpAction,
  type SmtpEvent,
  type SmtpFrontConfig,
  type SmtpState,
} from './machine.js';

function toEvent(frame: Frame): SmtpEvent {
  switch (frame.type) {
    case 'line':
      return { type: 'line', line: frame.line.toString('latin1') };
    case 'too-long':
      return { type: 'line-too-long' };
    case 'data':
      return { type: 'data', body: frame.body, tooLarge: frame.tooLarge };
    case 'bdat':
      return { type: 'bdat-chunk', chunk: frame.chunk, size: frame.size };
  }
}

export class SmtpFront extends Front<SmtpState, SmtpEvent, SmtpAction, Frame, Expect> {
  constructor(config: SmtpFrontConfig, maxLineLength: number) {
    super(smtpMachine(config), new SmtpFramer(maxLineLength), toEvent);
  }
}

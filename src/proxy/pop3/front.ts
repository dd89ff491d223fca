/**
 * The POP3 front without I/O: line framer plus machine, driven by the shared Front. Lines are decoded
 * as UTF-8 because passwords are compared with a hash of their UTF-8 bytes.
 */
import { Front } from '../shared/front.js';
import { Pop3LineFramer, type Frame } from './framer.js';
import {
  pop3Machine,
  type Pop3Action,
  type Pop3Event,
  type Pop3FrontConfig,
  type Pop3State,
} from './machine.js';

export class Pop3Front extends Front<Pop3State, Pop3Event, Pop3Action, Frame> {
  constructor(config: Pop3FrontConfig, maxLineLength: number) {
    super(pop3Machine(config), new Pop3LineFramer(maxLineLength), (frame) =>
      frame.type === 'line' ? { type: 'line', line: frame.line.toString('utf8') } : { type: 'line-too-long' },
    );
  }
}

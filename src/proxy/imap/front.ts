/**
 * The IMAP front without I/O: the literal-aware framer plus the machine, driven by the shared Front.
 */
import { Front } from '../shared/front.js';
import { ImapFramer, type FramerEvent, type FramerLimits } from './framer.js';
import { imapMachine, type Action, type Event, type MachineConfig, type State } from './machine.js';

export class ImapFront extends Front<State, Event, Action, FramerEvent> {
  constructor(config: MachineConfig, limits: FramerLimits, secure: boolean) {
    super(imapMachine(config, secure), new ImapFramer(limits), fromFramer);
  }
}

function fromFramer(event: FramerEvent): Event {
  switch (event.type) {
    case 'frame':
      return { type: 'frame', frame: event.frame };
    case 'continue':
      return { type: 'continue-literal' };
    case 'error':
      return { type: 'framing-error', kind: event.kind };
  }
}

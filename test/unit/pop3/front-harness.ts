/** Drives a Pop3Front like the session does, without sockets: replies are collected as wire text. */
import { Pop3Front, type AsyncEvent } from '../../../src/proxy/pop3/front.js';
import type { Pop3Action, Pop3FrontConfig } from '../../../src/proxy/pop3/machine.js';

export const CONFIG: Pop3FrontConfig = { tls: 'none', maxCommandsBeforeLogin: 20, maxFailedLogins: 3 };

export class Harness {
  readonly front: Pop3Front;
  /** Everything sent to the client so far, CRLF-terminated, as on the wire. */
  wire = '';
  readonly actions: Pop3Action[] = [];

  constructor(config: Partial<Pop3FrontConfig> = {}, maxLineLength = 1000) {
    this.front = new Pop3Front({ ...CONFIG, ...config }, maxLineLength);
    this.record(this.front.start());
  }

  /** Client bytes; returns the replies they produced. */
  send(data: string | Buffer): string {
    const before = this.wire.length;
    this.record(this.front.receive(typeof data === 'string' ? Buffer.from(data, 'utf8') : data));
    return this.wire.slice(before);
  }

  resolve(event: AsyncEvent): string {
    const before = this.wire.length;
    this.record(this.front.resolve(event));
    return this.wire.slice(before);
  }

  ofType<T extends Pop3Action['type']>(type: T): Extract<Pop3Action, { type: T }>[] {
    return this.actions.filter((a): a is Extract<Pop3Action, { type: T }> => a.type === type);
  }

  get phase(): string {
    return this.front.state.phase.name;
  }

  private record(actions: Pop3Action[]): void {
    for (const a of actions) {
      this.actions.push(a);
      if (a.type === 'send') this.wire += `${a.reply}\r\n`;
    }
  }
}

export const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
export const plain = (user: string, pass: string, authzid = ''): string =>
  b64(`${authzid}\0${user}\0${pass}`);

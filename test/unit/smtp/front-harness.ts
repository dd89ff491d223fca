/** Drives an SmtpFront like the session does, without sockets: replies are collected as text. */
import { SmtpFront } from '../../../src/proxy/smtp/front.js';
import type { SmtpAction, SmtpFrontConfig } from '../../../src/proxy/smtp/machine.js';

export const CONFIG: SmtpFrontConfig = {
  serverName: 'proxy.test',
  tls: 'none',
  maxMessageSize: 36_700_160,
  maxCommandsBeforeLogin: 20,
  maxFailedLogins: 3,
};

export class Harness {
  readonly front: SmtpFront;
  /** Everything sent to the client so far, CRLF-terminated, as on the wire. */
  wire = '';
  readonly actions: SmtpAction[] = [];

  constructor(config: Partial<SmtpFrontConfig> = {}, maxLineLength = 1000) {
    this.front = new SmtpFront({ ...CONFIG, ...config }, maxLineLength);
    this.record(this.front.start());
  }

  /** Client bytes; returns the replies they produced. */
  send(data: string | Buffer): string {
    const before = this.wire.length;
    this.record(this.front.receive(typeof data === 'string' ? Buffer.from(data, 'latin1') : data));
    return this.wire.slice(before);
  }

  resolve(event: Parameters<SmtpFront['resolve']>[0]): string {
    const before = this.wire.length;
    this.record(this.front.resolve(event));
    return this.wire.slice(before);
  }

  ofType<T extends SmtpAction['type']>(type: T): Extract<SmtpAction, { type: T }>[] {
    return this.actions.filter((a): a is Extract<SmtpAction, { type: T }> => a.type === type);
  }

  private record(actions: SmtpAction[]): void {
    for (const a of actions) {
      this.actions.push(a);
      if (a.type === 'send') this.wire += `${a.reply}\r\n`;
    }
  }
}

export const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
export const plain = (user: string, pass: string, authzid = ''): string =>
  b64(`${authzid}\0${user}\0${pass}`);

/**
 * The IMAP front after it has closed: a half-open client that keeps streaming after BYE must not
 * make the front buffer (and re-concatenate) what it sends.
 */
import { describe, expect, it } from 'vitest';
import { ImapFront } from '../../../src/proxy/imap/front.js';
import { frontLimits, type FrontLimits } from '../../../src/proxy/shared/limits.js';

function front(limits: Partial<FrontLimits> = {}): ImapFront {
  const all = { ...frontLimits(), ...limits };
  return new ImapFront(
    { tls: 'none', maxCommandsBeforeLogin: all.maxCommandsBeforeLogin, maxFailedLogins: all.maxFailedLogins },
    all,
    false,
  );
}

const MEGABYTE = Buffer.alloc(1024 * 1024, 'x');

describe('ImapFront once closed', () => {
  it('ignores every byte after LOGOUT, including what was pipelined behind it', () => {
    const f = front();
    f.start();
    const actions = f.receive(Buffer.from('a LOGOUT\r\nb NOOP\r\nc NOOP'));
    expect(actions.map((a) => a.type)).toEqual(['send', 'send', 'close']);
    expect(f.state.phase.name).toBe('closed');
    expect(f.buffered).toBe(0);
    for (let i = 0; i < 8; i++) {
      expect(f.receive(MEGABYTE)).toEqual([]);
      expect(f.buffered).toBe(0);
    }
  });

  it('ignores bytes after closing for too many commands', () => {
    const f = front({ maxCommandsBeforeLogin: 2 });
    f.start();
    const actions = f.receive(Buffer.from('a NOOP\r\nb NOOP\r\nc NOOP\r\n'));
    expect(actions.at(-1)).toMatchObject({ type: 'close' });
    expect(f.state.phase.name).toBe('closed');
    f.receive(MEGABYTE);
    expect(f.buffered).toBe(0);
  });

  it('ignores bytes after the idle timeout BYE', () => {
    const f = front();
    f.start();
    f.receive(Buffer.from('a NOO'));
    expect(f.resolve({ type: 'idle-timeout' }).at(-1)).toMatchObject({ type: 'close' });
    f.receive(MEGABYTE);
    expect(f.buffered).toBe(0);
  });
});

/**
 * Reading a password for `hash-password`: from a terminal without echo (asked twice), or the first line
 * of stdin when it is a pipe (`echo secret | xoauth-proxy hash-password`, or a secrets manager).
 */
import { UsageError, type CliIO } from './context.js';

/** One line typed at a raw-mode terminal, echoing nothing. Ctrl+C / Ctrl+D abort. */
export function readHiddenLine(io: CliIO, prompt: string): Promise<string> {
  const { stdin } = io;
  io.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let line = '';
    const finish = (err?: Error) => {
      stdin.removeListener('data', onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      io.stderr.write('\n');
      if (err) reject(err);
      else resolve(line);
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || ch === '\u0004') return finish(new UsageError('aborted'));
        if (ch === '\u007f' || ch === '\b') line = [...line].slice(0, -1).join('');
        else if (ch >= ' ') line += ch;
      }
    };
    stdin.setRawMode?.(true);
    stdin.on('data', onData);
    stdin.resume();
  });
}

/** The first line of a non-terminal stdin (without its line ending). */
export async function readFirstLine(
  stdin: NodeJS.ReadableStream,
  maxBytes = 64 * 1024,
): Promise<string | undefined> {
  let text = '';
  for await (const chunk of stdin) {
    text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    const nl = text.indexOf('\n');
    if (nl !== -1) return text.slice(0, nl).replace(/\r$/, '');
    if (text.length > maxBytes) throw new UsageError('the first line on stdin is too long for a password');
  }
  return text === '' ? undefined : text.replace(/\r$/, '');
}

export async function readNewPassword(io: CliIO): Promise<string> {
  if (io.stdin.isTTY) {
    const first = await readHiddenLine(io, 'New password: ');
    if (first === '') throw new UsageError('the password is empty');
    const second = await readHiddenLine(io, 'Repeat password: ');
    if (first !== second) throw new UsageError('the passwords do not match');
    return first;
  }
  const line = await readFirstLine(io.stdin);
  if (line === undefined || line === '') throw new UsageError('no password on stdin (expected one line)');
  return line;
}

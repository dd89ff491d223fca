import { EventEmitter } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import type { CliDeps, CliIO } from '../../../src/cli/context.js';
import { run } from '../../../src/cli/program.js';
import { silentLogger } from '../../../src/log.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function collect(stream: PassThrough): () => string {
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString('utf8')));
  return () => text;
}

/** Runs the CLI in-process with captured output; stdin is `input` (a pipe) unless `stdin` is given. */
export async function runCli(
  args: string[],
  options: { input?: string; stdin?: CliIO['stdin']; deps?: Partial<CliDeps>; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out = collect(stdout);
  const err = collect(stderr);
  const io: CliIO = {
    stdout,
    stderr,
    stdin: options.stdin ?? Readable.from(options.input === undefined ? [] : [options.input]),
    env: options.env ?? {},
  };
  const deps: CliDeps = {
    startDaemon: () => Promise.reject(new Error('no daemon in this test')),
    signals: new EventEmitter(),
    logger: () => silentLogger(),
    ...options.deps,
  };
  const code = await run(['node', 'xoauth-proxy', ...args], io, deps);
  return { code, stdout: out(), stderr: err() };
}

/** A stdin that claims to be a terminal, for the no-echo password prompt. */
export function fakeTty(): PassThrough & {
  isTTY: boolean;
  setRawMode: (mode: boolean) => void;
  rawModes: boolean[];
} {
  const stream = new PassThrough() as PassThrough & {
    isTTY: boolean;
    setRawMode: (mode: boolean) => void;
    rawModes: boolean[];
  };
  stream.isTTY = true;
  stream.rawModes = [];
  stream.setRawMode = (mode: boolean) => {
    stream.rawModes.push(mode);
  };
  return stream;
}

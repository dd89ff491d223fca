import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { pidFilePath } from '../../daemon.js';
import { EXIT, ExitCode, defineCommand } from '../context.js';

/**
 * Checks the config first (a broken file exits 2 with its file:line:col errors, and the daemon is not
 * disturbed), then sends SIGHUP to the daemon whose pid file sits next to the token store. The daemon
 * validates again and logs the outcome; systemd's ExecReload does the same with `kill -HUP`.
 */
export default defineCommand((ctx) =>
  new Command('reload')
    .description('validate the config and tell the running proxy to reload it (SIGHUP)')
    .action((_opts: unknown, cmd: Command) => {
      const config = ctx.loadConfig(cmd);
      const pidFile = pidFilePath(config);
      let pid: number;
      try {
        pid = Number(readFileSync(pidFile, 'utf8').trim());
      } catch {
        ctx.err(
          `error: no running xoauth-proxy found: ${pidFile} does not exist (is it started with this config?)\n`,
        );
        throw new ExitCode(EXIT.failure);
      }
      if (!Number.isInteger(pid) || pid <= 0) {
        ctx.err(`error: ${pidFile} holds no process id\n`);
        throw new ExitCode(EXIT.failure);
      }
      try {
        process.kill(pid, 'SIGHUP');
      } catch (err) {
        ctx.err(`error: cannot signal process ${pid} from ${pidFile}: ${(err as Error).message}\n`);
        throw new ExitCode(EXIT.failure);
      }
      ctx.out(
        `${config.file} is valid; sent SIGHUP to xoauth-proxy (pid ${pid}). Its log says what changed.\n`,
      );
    }),
);

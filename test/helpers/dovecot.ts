/**
 * A real Dovecot 2.3 (Debian's dovecot-imapd + dovecot-submissiond, and dovecot-pop3d when installed or
 * asked for) as the stand-in for Gmail / Microsoft
 * in end-to-end tests: its own config, base_dir, state_dir and log under a temp dir, `dovecot -F -c`,
 * listeners on free loopback ports, and the `oauth2` passdb validating every XOAUTH2 / OAUTHBEARER token
 * against the fake authorization server's tokeninfo endpoint.
 *
 * Why 127.0.0.2: Dovecot counts a connection as secured when the remote IP equals the local IP
 * (login-common: `client->secured = ssl || trusted || net_ip_compare(remote, local)`), so on 127.0.0.1 it
 * accepts AUTH without TLS and a proxy that silently skipped upstream STARTTLS would pass every test.
 * A client connecting to 127.0.0.2 gets source address 127.0.0.1 from the kernel, the IPs differ, and with
 * `disable_plaintext_auth = yes` Dovecot refuses XOAUTH2 before TLS (`[PRIVACYREQUIRED]`). On top of that
 * `logins()` reads Dovecot's own `Login:` log lines, which say `TLS` for a TLS session.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { pickFreePorts } from './proxy-process.js';

export const DOVECOT_BIN = process.env.DOVECOT_BIN ?? '/usr/sbin/dovecot';
const SUBMISSION_BIN = '/usr/lib/dovecot/submission';
const IMAP_BIN = '/usr/lib/dovecot/imap';
export const POP3_BIN = '/usr/lib/dovecot/pop3';

/** Whether Debian's dovecot-pop3d is installed (the stand-in then serves POP3 unless told not to). */
export function pop3Installed(): boolean {
  return existsSync(POP3_BIN);
}

export interface DovecotTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export interface DovecotOptions {
  /** e.g. fakeAuth.tokeninfoUrl; `?access_token=` is appended when the URL has no query. */
  tokeninfoUrl: string;
  /** Scope every token must carry (Debian's build requires all listed scopes). */
  scope?: string;
  /** Users whose maildirs exist from the start (any user can log in; the userdb is static). */
  users?: string[];
  /** Where submission relays accepted mail (the SMTP sink). Without it submission is not started. */
  submissionRelay?: { host: string; port: number };
  /** Server certificate; must be valid for `host`. Default: a throwaway PKI made for 127.0.0.2. */
  tls?: DovecotTls;
  /** Listen address; default 127.0.0.2 (see the file comment). */
  host?: string;
  /**
   * POP3 (STLS) and POP3S listeners. Default: when dovecot-pop3d is installed. `true` fails the start
   * when it is missing; `false` never serves POP3.
   */
  pop3?: boolean;
}

export interface DovecotPorts {
  /** IMAP with STARTTLS. */
  imap: number;
  /** IMAP with implicit TLS. */
  imaps: number;
  /** Submission with STARTTLS. */
  submission: number;
  /** Submission with implicit TLS. */
  submissions: number;
  /** POP3 with STLS (only when POP3 is served). */
  pop3?: number;
  /** POP3 with implicit TLS (only when POP3 is served). */
  pop3s?: number;
}

export interface DovecotLogin {
  protocol: 'imap' | 'submission' | 'pop3';
  user: string;
  method: string;
  /** The local port the client connected to, so a test can tell the STARTTLS and implicit listeners apart. */
  localPort: number;
  /** True when the session was on TLS (Dovecot logs `TLS`, or `secured` for a trusted plaintext one). */
  tls: boolean;
  line: string;
}

export interface DovecotServer {
  readonly host: string;
  readonly ports: DovecotPorts;
  /** CA that signed the server certificate (the proxy connection's `ca`). */
  readonly caPem: string;
  readonly dir: string;
  readonly logFile: string;
  /** Put a message into a mailbox the way an MDA would (tmp/ then rename to new/); bytes kept as given. */
  deliver(user: string, raw: Buffer | string, mailbox?: string): void;
  /** Dovecot's log so far. */
  log(): string;
  /**
   * Successful logins from the log, oldest first. Dovecot writes its log asynchronously (login process ->
   * log process -> file), so right after a client's OK the line may not be there yet: assertions about a
   * login that just happened use waitForLogins.
   */
  logins(): DovecotLogin[];
  /**
   * Waits until at least `count` logins after index `since` (an earlier `logins().length`) match `filter`,
   * then returns those that match.
   */
  waitForLogins(o: {
    count: number;
    since?: number;
    filter?: (l: DovecotLogin) => boolean;
    timeoutMs?: number;
  }): Promise<DovecotLogin[]>;
  /** Waits until the log matches `pattern`; returns the log. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface DovecotAvailability {
  ok: boolean;
  reason?: string;
}

function commandExists(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, name)));
}

export interface DovecotRequirements {
  /** The file needs Dovecot's POP3 server too (dovecot-pop3d). */
  pop3?: boolean;
}

/** Whether Dovecot with imap and submission (and the named command-line clients) is installed here. */
export function dovecotAvailability(
  tools: string[] = [],
  needs: DovecotRequirements = {},
): DovecotAvailability {
  for (const bin of [DOVECOT_BIN, IMAP_BIN, SUBMISSION_BIN]) {
    if (!existsSync(bin)) {
      return { ok: false, reason: `${bin} is missing (apt-get install dovecot-imapd dovecot-submissiond)` };
    }
  }
  if (needs.pop3 && !pop3Installed()) {
    return { ok: false, reason: `${POP3_BIN} is missing (apt-get install dovecot-pop3d)` };
  }
  for (const tool of tools) {
    if (!commandExists(tool))
      return { ok: false, reason: `\`${tool}\` is not on the PATH (apt-get install ${tool})` };
  }
  try {
    const version = execFileSync(DOVECOT_BIN, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim();
    if (!version.startsWith('2.3')) {
      return { ok: false, reason: `Dovecot ${version} found; these tests are written for 2.3` };
    }
  } catch (err) {
    return { ok: false, reason: `${DOVECOT_BIN} --version failed: ${(err as Error).message}` };
  }
  return { ok: true };
}

/**
 * Decides for an e2e file whether it runs: Dovecot (and `tools`, and POP3 when `needs.pop3`) present ->
 * run; missing under CI=true -> throw (a failure, never a skip); missing locally -> skip, loudly.
 */
export function requireDovecot(tools: string[] = [], needs: DovecotRequirements = {}): boolean {
  const availability = dovecotAvailability(tools, needs);
  if (availability.ok) return true;
  if (process.env.CI === 'true' || process.env.CI === '1') {
    throw new Error(`CI=true but the end-to-end stand-in is not usable: ${availability.reason}`);
  }
  console.warn(
    `\n*** SKIPPING end-to-end tests: ${availability.reason}. They run in CI (.ci/run installs Dovecot, curl, swaks). ***\n`,
  );
  return false;
}

interface MailIdentity {
  uid: number;
  gid: number;
  /** System user for Dovecot's internal and login processes. */
  systemUser: string;
  systemGroup: string;
}

function mailIdentity(): MailIdentity {
  const me = userInfo();
  if (me.uid !== 0) {
    // Unprivileged: everything runs as us; Dovecot cannot switch users anyway.
    const group = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
    return { uid: me.uid, gid: me.gid, systemUser: me.username, systemGroup: group };
  }
  // As root (CI containers): mail processes run as nobody, because Dovecot refuses mail access as uid 0;
  // the login and internal processes keep Debian's dovenull/dovecot users.
  return { uid: 65534, gid: 65534, systemUser: '', systemGroup: '' };
}

let cachedPki: DovecotTls | undefined;

/** A throwaway CA and a server certificate for 127.0.0.2, 127.0.0.1 and localhost, once per process. */
export function dovecotTestPki(): DovecotTls {
  if (cachedPki) return cachedPki;
  const dir = mkdtempSync(join(tmpdir(), 'e2e-dovecot-pki-'));
  const run = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
  };
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  try {
    run(
      ['req', '-x509', ...ecKey, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3650']
        .concat(['-subj', '/CN=xoauth-proxy e2e upstream CA'])
        .concat([
          '-addext',
          'basicConstraints=critical,CA:TRUE',
          '-addext',
          'keyUsage=critical,keyCertSign,cRLSign',
        ]),
    );
    run(['req', '-new', ...ecKey, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
    writeFileSync(
      join(dir, 'server.ext'),
      'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' +
        'subjectAltName=DNS:localhost,IP:127.0.0.2,IP:127.0.0.1\n',
    );
    run(
      ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial'].concat([
        '-out',
        'server.pem',
        '-days',
        '3650',
        '-sha256',
        '-extfile',
        'server.ext',
      ]),
    );
    cachedPki = {
      caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
      certPem: readFileSync(join(dir, 'server.pem'), 'utf8'),
      keyPem: readFileSync(join(dir, 'server.key'), 'utf8'),
    };
    return cachedPki;
  } finally {
    // The PEMs live on in memory; each Dovecot gets its own copies in its own temp dir.
    rmSync(dir, { recursive: true, force: true });
  }
}

function renderConfig(o: {
  dir: string;
  host: string;
  ports: DovecotPorts;
  id: MailIdentity;
  relay?: { host: string; port: number };
}): string {
  const { dir, host, ports, id, relay } = o;
  const users = id.systemUser
    ? `default_internal_user = ${id.systemUser}\ndefault_internal_group = ${id.systemGroup}\ndefault_login_user = ${id.systemUser}\n`
    : '';
  // chroot() needs root; an unprivileged instance runs its login processes unjailed.
  const noChroot = id.systemUser ? 'chroot =\n  ' : '';
  const pop3 =
    ports.pop3 !== undefined && ports.pop3s !== undefined
      ? `
service pop3-login {
  inet_listener pop3 {
    port = ${ports.pop3}
  }
  inet_listener pop3s {
    port = ${ports.pop3s}
    ssl = yes
  }
  service_count = 0
  ${noChroot}
}
`
      : '';
  const protocols = ['imap', ...(relay ? ['submission'] : []), ...(pop3 ? ['pop3'] : [])].join(' ');
  const submission = relay
    ? `
submission_relay_host = ${relay.host}
submission_relay_port = ${relay.port}
submission_relay_ssl = no
service submission-login {
  inet_listener submission {
    port = ${ports.submission}
  }
  inet_listener submissions {
    port = ${ports.submissions}
    ssl = yes
  }
  service_count = 0
  ${noChroot}
}
`
    : '';
  return `# Generated by test/helpers/dovecot.ts for one test file; thrown away afterwards.
instance_name = xoauth-e2e-${ports.imap}
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
${users}protocols = ${protocols}
listen = ${host}
hostname = dovecot.e2e.test
ssl = yes
ssl_cert = <${dir}/server.pem
ssl_key = <${dir}/server.key
disable_plaintext_auth = yes
auth_mechanisms = xoauth2 oauthbearer
# Every login must reach the tokeninfo endpoint, so expiry and revocation are seen at once.
auth_cache_size = 0
auth_failure_delay = 0
auth_verbose = yes
# lport tells the STARTTLS and implicit-TLS listeners apart in logins().
login_log_format_elements = user=<%u> method=%m rip=%r lip=%l lport=%{lport} mpid=%e %c session=<%{session}>
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = ${dir}/dovecot-oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=${id.uid} gid=${id.gid} home=${dir}/mail/%u
}
first_valid_uid = ${Math.min(id.uid, 500)}
first_valid_gid = ${Math.min(id.gid, 1)}
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000
mailbox_idle_check_interval = 1 secs
# Failure tests would otherwise slow every later login by seconds.
service anvil {
  ${noChroot}unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    port = ${ports.imap}
  }
  inet_listener imaps {
    port = ${ports.imaps}
    ssl = yes
  }
  service_count = 0
  ${noChroot}
}
${id.systemUser ? 'service ipc {\n  chroot =\n}\nservice aggregator {\n  chroot =\n}\n' : ''}
${submission}${pop3}`;
}

/** Resolves once `host:port` sends an IMAP, SMTP or POP3 greeting. */
function waitForGreeting(
  host: string,
  port: number,
  deadline: number,
  exited: () => string | undefined,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const why = exited();
      if (why) return reject(new Error(why));
      if (Date.now() > deadline)
        return reject(new Error(`Dovecot did not answer on ${host}:${port} in time`));
      const socket = connect({ host, port });
      const retry = (): void => {
        socket.destroy();
        setTimeout(attempt, 100);
      };
      socket.setTimeout(2000, retry);
      socket.once('error', retry);
      socket.once('data', (chunk) => {
        socket.destroy();
        if (/^(\* OK|220|\+OK)/.test(chunk.toString('latin1'))) resolve();
        else retry();
      });
    };
    attempt();
  });
}

function parseLogins(log: string): DovecotLogin[] {
  const logins: DovecotLogin[] = [];
  // Only whole lines: a line still being written could look like a login without its ", TLS,".
  const complete = log.slice(0, log.lastIndexOf('\n') + 1);
  for (const line of complete.split('\n')) {
    const m = /(imap|submission|pop3)-login: Info: Login: user=<([^>]*)>, method=([^,]+),.*?lport=(\d+)/.exec(
      line,
    );
    if (!m) continue;
    logins.push({
      protocol: m[1] as DovecotLogin['protocol'],
      user: m[2]!,
      method: m[3]!,
      localPort: Number(m[4]),
      tls: /, TLS(,|$)/.test(line),
      line,
    });
  }
  return logins;
}

async function startOnce(options: DovecotOptions): Promise<DovecotServer> {
  const host = options.host ?? '127.0.0.2';
  const tls = options.tls ?? dovecotTestPki();
  const id = mailIdentity();
  if (options.pop3 === true && !pop3Installed()) {
    throw new Error(`POP3 was asked for but ${POP3_BIN} is missing (apt-get install dovecot-pop3d)`);
  }
  const withPop3 = options.pop3 ?? pop3Installed();
  const [imap, imaps, submission, submissions, pop3, pop3s] = await pickFreePorts(withPop3 ? 6 : 4, host);
  const ports: DovecotPorts = {
    imap: imap!,
    imaps: imaps!,
    submission: submission!,
    submissions: submissions!,
    ...(withPop3 ? { pop3: pop3!, pop3s: pop3s! } : {}),
  };

  const dir = mkdtempSync(join(tmpdir(), 'e2e-dovecot-'));
  // Dovecot's unprivileged processes (dovenull, dovecot, the mail user) must traverse it.
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'mail'), { mode: 0o755 });
  if (userInfo().uid === 0) chownSync(join(dir, 'mail'), id.uid, id.gid);
  writeFileSync(join(dir, 'server.pem'), tls.certPem);
  writeFileSync(join(dir, 'server.key'), tls.keyPem, { mode: 0o600 });
  const tokeninfo = options.tokeninfoUrl.includes('?')
    ? options.tokeninfoUrl
    : `${options.tokeninfoUrl}?access_token=`;
  writeFileSync(
    join(dir, 'dovecot-oauth2.conf.ext'),
    [
      `tokeninfo_url = ${tokeninfo}`,
      'username_attribute = email',
      'active_attribute =',
      'active_value =',
      `scope = ${options.scope ?? 'https://mail.google.com/'}`,
      'timeout_msecs = 5000',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  const confFile = join(dir, 'dovecot.conf');
  writeFileSync(confFile, renderConfig({ dir, host, ports, id, relay: options.submissionRelay }));
  const logFile = join(dir, 'dovecot.log');
  writeFileSync(logFile, '');

  const mailRoot = join(dir, 'mail');
  const ensureDir = (path: string): void => {
    if (existsSync(path)) return;
    mkdirSync(path, { recursive: true, mode: 0o700 });
    if (userInfo().uid === 0) {
      // mkdir -p created every missing level as root; hand the whole chain below the mail root over.
      let p = path;
      while (p.startsWith(mailRoot) && p !== mailRoot) {
        chownSync(p, id.uid, id.gid);
        p = join(p, '..');
      }
    }
  };
  const maildir = (user: string, mailbox: string): string =>
    mailbox.toUpperCase() === 'INBOX'
      ? join(mailRoot, user, 'Maildir')
      : join(mailRoot, user, 'Maildir', `.${mailbox}`);
  for (const user of options.users ?? []) {
    for (const sub of ['cur', 'new', 'tmp']) ensureDir(join(maildir(user, 'INBOX'), sub));
  }

  let stderr = '';
  let exitInfo: string | undefined;
  const child: ChildProcess = spawn(DOVECOT_BIN, ['-F', '-c', confFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so stop() can take every child Dovecot forked with it.
    detached: true,
  });
  child.stdout?.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  // A test run that ends without stop() (a crash, Ctrl+C) must not leave Dovecot listening behind it.
  const killOnExit = (): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      process.off('exit', killOnExit);
      exitInfo = `dovecot exited (code ${code}, signal ${signal}): ${stderr.trim()}\n${readLog()}`;
      resolve();
    });
  });
  const readLog = (): string => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };

  let seq = 0;
  let stopped = false;
  const server: DovecotServer = {
    host,
    ports,
    caPem: tls.caPem,
    dir,
    logFile,
    deliver(user, raw, mailbox = 'INBOX') {
      const base = maildir(user, mailbox);
      for (const sub of ['cur', 'new', 'tmp']) ensureDir(join(base, sub));
      const bytes = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
      seq += 1;
      const name = `${Math.floor(Date.now() / 1000)}.M${seq}P${process.pid}.e2e,S=${bytes.length}`;
      const tmp = join(base, 'tmp', name);
      writeFileSync(tmp, bytes, { mode: 0o600 });
      if (userInfo().uid === 0) chownSync(tmp, id.uid, id.gid);
      renameSync(tmp, join(base, 'new', name));
    },
    log: readLog,
    logins: () => parseLogins(readLog()),
    async waitForLogins({ count, since = 0, filter = () => true, timeoutMs = 10_000 }) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = parseLogins(readLog()).slice(since).filter(filter);
        if (found.length >= count) return found;
        if (Date.now() > deadline) {
          throw new Error(`Dovecot logged ${found.length} of ${count} expected logins in ${timeoutMs} ms`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async waitForLog(pattern, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const text = readLog();
        if (pattern.test(text)) return text;
        if (Date.now() > deadline) throw new Error(`Dovecot never logged ${pattern} in ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (exitInfo === undefined && child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          // already gone
        }
        const timer = setTimeout(() => {
          try {
            if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }, 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    const deadline = Date.now() + 30_000;
    const check = (): string | undefined => exitInfo;
    await waitForGreeting(host, ports.imap, deadline, check);
    if (options.submissionRelay) await waitForGreeting(host, ports.submission, deadline, check);
    if (ports.pop3 !== undefined) await waitForGreeting(host, ports.pop3, deadline, check);
  } catch (err) {
    const log = readLog();
    await server.stop();
    throw Object.assign(new Error(`${(err as Error).message}\n--- dovecot log ---\n${log}`), {
      dovecotLog: log,
    });
  }
  return server;
}

/**
 * Starts Dovecot and waits until IMAP (and submission, when relaying, and POP3, when served) greet. Retries with new ports when
 * one of the picked ports was taken in the meantime.
 */
export async function startDovecot(options: DovecotOptions): Promise<DovecotServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(options);
    } catch (err) {
      lastError = err;
      if (!/Address already in use|bind\(/.test(String((err as Error).message))) throw err;
    }
  }
  throw lastError;
}

/**
 * `xoauth-proxy check`: which protocols to try, running them one after the other with one
 * TokenManager (so a token refreshed for IMAP is the one SMTP uses), and the report in text or JSON.
 */
import type { Config, ResolvedAccount } from '../config/types.js';
import type { TokenProvider } from '../oauth/types.js';
import { describeFailure } from './failure.js';
import { checkImap } from './imap.js';
import { checkPop3 } from './pop3.js';
import { checkSmtp } from './smtp.js';
import {
  PROTOCOLS,
  type CheckEnv,
  type CheckProtocol,
  type CheckResult,
  type CheckSuccess,
  type ImapFacts,
  type Pop3Facts,
  type SmtpFacts,
} from './types.js';

/** A protocol the person asked for that the account cannot be checked with (exit code 2). */
export class ProtocolSelectionError extends Error {
  override name = 'ProtocolSelectionError';
}

/**
 * Explicit flags win (each must have a server on the connection). Without flags: IMAP and SMTP when
 * the connection has a server for them, POP3 only when it has one AND the proxy serves POP3
 * (`listen.pop3`): the built-in providers always name a POP3 server, but POP is often switched off
 * for the mailbox (Outlook.com: by default), and a check of something nobody uses would only fail.
 */
export function selectProtocols(
  config: Pick<Config, 'listen'>,
  account: ResolvedAccount,
  asked: Partial<Record<CheckProtocol, boolean>>,
): CheckProtocol[] {
  const connection = account.connection;
  const explicit = PROTOCOLS.filter((p) => asked[p] === true);
  if (explicit.length > 0) {
    for (const p of explicit) {
      if (!connection[p]) {
        throw new ProtocolSelectionError(
          `connection ${connection.name} has no ${p} server: set ${p}: on the connection, or leave out --${p}`,
        );
      }
    }
    return explicit;
  }
  const chosen = PROTOCOLS.filter(
    (p) => connection[p] !== undefined && (p !== 'pop3' || config.listen.pop3.length > 0),
  );
  if (chosen.length === 0) {
    throw new ProtocolSelectionError(`connection ${connection.name} names no IMAP, SMTP or POP3 server`);
  }
  return chosen;
}

type Runner = (env: CheckEnv) => Promise<CheckSuccess<ImapFacts | SmtpFacts | Pop3Facts>>;
const RUNNERS: Record<CheckProtocol, Runner> = { imap: checkImap, smtp: checkSmtp, pop3: checkPop3 };

export interface RunChecksOptions {
  account: ResolvedAccount;
  tokens: TokenProvider;
  protocols: CheckProtocol[];
  timeoutMs: number;
  /** Injectable for tests. */
  runners?: Partial<Record<CheckProtocol, Runner>>;
  clock?: () => number;
}

/** Runs the checks one after the other; never throws (every failure is a result). */
export async function runChecks(options: RunChecksOptions): Promise<CheckResult[]> {
  const now = options.clock ?? Date.now;
  const env: CheckEnv = { account: options.account, tokens: options.tokens, timeoutMs: options.timeoutMs };
  const results: CheckResult[] = [];
  for (const protocol of options.protocols) {
    const server = options.account.connection[protocol];
    const base = {
      protocol,
      server: server ? `${server.host}:${server.port}` : '-',
      tls: server?.tls ?? 'implicit',
    };
    const started = now();
    try {
      const run = options.runners?.[protocol] ?? RUNNERS[protocol];
      const success = await run(env);
      results.push({
        ...base,
        ok: true,
        durationMs: now() - started,
        mechanism: success.mechanism,
        refreshed: success.refreshed,
        [protocol]: success.facts,
      } as CheckResult);
    } catch (err) {
      results.push({
        ...base,
        ok: false,
        durationMs: now() - started,
        error: describeFailure(err, { protocol, account: options.account, server: base.server }),
      });
    }
  }
  return results;
}

/** The `--json` document. */
export interface CheckReport {
  account: string;
  email: string;
  connection: string;
  ok: boolean;
  checks: CheckResult[];
}

export function buildReport(account: ResolvedAccount, checks: CheckResult[]): CheckReport {
  return {
    account: account.username,
    email: account.email,
    connection: account.connection.name,
    ok: checks.every((c) => c.ok),
    checks,
  };
}

const LABEL: Record<CheckProtocol, string> = { imap: 'IMAP', smtp: 'SMTP', pop3: 'POP3' };

function learned(result: Extract<CheckResult, { ok: true }>): string {
  const tls = result.tls === 'implicit' ? 'TLS' : 'STARTTLS';
  const how = `${result.server} (${tls}, ${result.mechanism ?? 'OAuth'})`;
  const refreshed = result.refreshed ? '; the first token was refused, a forced refresh fixed it' : '';
  if (result.imap) {
    const { inboxMessages, capabilities } = result.imap;
    return `${how}: INBOX has ${inboxMessages} message${inboxMessages === 1 ? '' : 's'}; capabilities ${capabilities.join(' ')}${refreshed}`;
  }
  if (result.smtp?.graph) {
    const g = result.smtp.graph;
    return `sends through Microsoft Graph ${g.url} (${g.why}): a token for ${g.scopes.join(' ')} was obtained, no mail sent`;
  }
  if (result.smtp) return `${how}: login accepted (${result.smtp.authResponse}), no mail sent${refreshed}`;
  if (result.pop3) {
    const { messages, octets } = result.pop3;
    return `${how}: ${messages} message${messages === 1 ? '' : 's'} (${octets} octets) in the maildrop${refreshed}`;
  }
  return `${how}${refreshed}`;
}

/** One line per protocol, then a summary line. */
export function formatReport(report: CheckReport): string {
  const lines = [
    `Checking ${report.account}` +
      (report.email.toLowerCase() !== report.account.toLowerCase() ? ` (mailbox ${report.email})` : '') +
      ` with connection ${report.connection}`,
  ];
  for (const r of report.checks) {
    lines.push(
      r.ok
        ? `${LABEL[r.protocol]}  OK    ${learned(r)}`
        : `${LABEL[r.protocol]}  FAIL  ${r.server}: ${r.error.message}`,
    );
  }
  const failed = report.checks.filter((c) => !c.ok).length;
  lines.push(
    failed === 0
      ? `All ${report.checks.length} checks passed.`
      : `${failed} of ${report.checks.length} checks failed.`,
  );
  return `${lines.join('\n')}\n`;
}

/** Removes every given secret from a text (a last line of defence: no message should hold one). */
export function scrub(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const s of secrets) if (s.length >= 8) out = out.split(s).join('[redacted]');
  return out;
}

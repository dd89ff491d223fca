/**
 * Throwaway test PKI: one CA and one server certificate for 127.0.0.1 / ::1 / localhost, made with the
 * `openssl` CLI into a temp dir once per process (key generation is the slow part; every suite in a
 * worker shares the result). Never use outside tests.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCerts {
  /** The CA certificate clients must trust (pass as `ca`). */
  caPem: string;
  /** Server certificate (CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1), signed by the CA. */
  certPem: string;
  /** The server certificate's private key (PKCS#8, unencrypted). */
  keyPem: string;
  /** Files on disk holding the same PEMs, for tools that want paths (curl --cacert, config files). */
  caFile: string;
  certFile: string;
  keyFile: string;
}

let cached: TestCerts | undefined;

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
}

/** The CA and server certificate, generated on first call and then cached for the process. */
export function getTestCerts(): TestCerts {
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'xoauth-proxy-certs-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  // EC P-256 keeps generation fast on a loaded machine; Node, curl and openssl all accept it.
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    [
      'req',
      '-x509',
      ...ecKey,
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '3650',
      '-subj',
      '/CN=xoauth-proxy test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  openssl(
    ['req', '-new', ...ecKey, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'],
    dir,
  );
  writeFileSync(
    join(dir, 'server.ext'),
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
      '',
    ].join('\n'),
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.pem',
      '-days',
      '3650',
      '-sha256',
      '-extfile',
      'server.ext',
    ],
    dir,
  );
  const caFile = join(dir, 'ca.pem');
  const certFile = join(dir, 'server.pem');
  const keyFile = join(dir, 'server.key');
  cached = {
    caPem: readFileSync(caFile, 'utf8'),
    certPem: readFileSync(certFile, 'utf8'),
    keyPem: readFileSync(keyFile, 'utf8'),
    caFile,
    certFile,
    keyFile,
  };
  return cached;
}

/**
 * Key material for the assertion grants: Google-style service account JSON keys and certificate
 * credentials (self-signed RSA certificate, optionally with an encrypted key) made by `openssl`.
 */
import {
  createHash,
  createPublicKey,
  generateKeyPairSync,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ServiceAccountFixture {
  clientEmail: string;
  clientId: string;
  /** The JSON text Google would issue. */
  json: string;
  publicKey: KeyObject;
}

export function makeServiceAccountKey(
  clientEmail = 'mail-proxy@project.iam.gserviceaccount.com',
  clientId = '112233445566778899',
): ServiceAccountFixture {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const json = JSON.stringify({
    type: 'service_account',
    project_id: 'project',
    private_key_id: 'f00dfeed',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: clientEmail,
    client_id: clientId,
    token_uri: 'https://oauth2.googleapis.com/token',
  });
  return { clientEmail, clientId, json, publicKey };
}

export interface CertificateFixture {
  certFile: string;
  keyFile: string;
  publicKey: KeyObject;
  thumbprintS256: string;
  notAfter: number;
}

/**
 * A self-signed certificate and its key in `dir`. `days` may be small to test the expiry warning;
 * with `passphrase` the key is written encrypted (PKCS#8, AES-256).
 */
export function makeClientCertificate(
  dir: string,
  options: { name?: string; days?: number; passphrase?: string } = {},
): CertificateFixture {
  const name = options.name ?? 'client';
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-new',
      '-key',
      keyFile,
      '-out',
      certFile,
      '-days',
      String(options.days ?? 365),
      '-subj',
      `/CN=${name}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 },
  );
  if (options.passphrase !== undefined) {
    writeFileSync(
      keyFile,
      privateKey.export({
        type: 'pkcs8',
        format: 'pem',
        cipher: 'aes-256-cbc',
        passphrase: options.passphrase,
      }),
    );
  }
  const cert = new X509Certificate(readFileSync(certFile));
  return {
    certFile,
    keyFile,
    publicKey: createPublicKey(privateKey),
    thumbprintS256: createHash('sha256').update(cert.raw).digest('base64url'),
    notAfter: Date.parse(cert.validTo),
  };
}

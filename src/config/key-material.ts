/**
 * Key material a connection can authenticate with instead of a client secret: a Google service
 * account key (JSON) and a certificate credential (PEM certificate + private key). Both are parsed
 * and checked at load time, so a wrong file shows in `check-config`, not at the first login.
 */
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import type { ClientCertificate, ServiceAccountKey } from './types.js';

export interface KeyProblem {
  /** Which key of the YAML object the problem is about. */
  key: string;
  problem: string;
  fix: string;
}

/** A certificate this close to its end makes check-config warn. */
export const CERTIFICATE_WARN_MS = 30 * 24 * 60 * 60_000;

function rsaKey(pem: string, passphrase: string | undefined): KeyObject | string {
  // Without a passphrase OpenSSL only says "interrupted or cancelled"; the PEM label is clearer.
  if (
    passphrase === undefined &&
    /-----BEGIN (ENCRYPTED PRIVATE KEY|[A-Z ]+-----\s*Proc-Type: 4,ENCRYPTED)/.test(pem)
  ) {
    return 'the key is encrypted and no passphrase is configured';
  }
  try {
    const key = createPrivateKey(passphrase === undefined ? { key: pem } : { key: pem, passphrase });
    if (key.asymmetricKeyType !== 'rsa') {
      return `the key is ${key.asymmetricKeyType ?? 'not an asymmetric key'}, not RSA`;
    }
    return key;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (/PASSPHRASE|BAD_DECRYPT/i.test(code) || /passphrase|bad decrypt/i.test((err as Error).message)) {
      return passphrase === undefined
        ? 'the key is encrypted and no passphrase is configured'
        : 'the passphrase does not decrypt the key';
    }
    return `not a PEM private key (${(err as Error).message})`;
  }
}

/** Parses the JSON key Google issues for a service account. */
export function parseServiceAccountKey(
  text: string,
  clientId: string,
): { key: ServiceAccountKey } | { problem: string; fix: string } {
  let json: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed === null || typeof parsed !== 'object') throw new Error('not an object');
    json = parsed as Record<string, unknown>;
  } catch {
    return {
      problem: 'the service account key is not JSON',
      fix: 'Use the JSON key file from Google Cloud console → IAM → Service accounts → Keys.',
    };
  }
  if (json.type !== 'service_account') {
    return {
      problem: `the key is of type ${JSON.stringify(json.type ?? null)}, not service_account`,
      fix: 'Download a key of the service account (not an OAuth client secret file).',
    };
  }
  if (typeof json.client_email !== 'string' || typeof json.private_key !== 'string') {
    return {
      problem: 'the service account key lacks client_email or private_key',
      fix: 'Use the complete JSON key file as Google issued it.',
    };
  }
  if (typeof json.client_id === 'string' && json.client_id !== clientId) {
    return {
      problem: `clientId ${clientId} is not the key's client_id ${json.client_id}`,
      fix: `Set clientId to ${json.client_id}: the Admin console delegates to that id.`,
    };
  }
  const privateKey = rsaKey(json.private_key, undefined);
  if (typeof privateKey === 'string') {
    return {
      problem: `the service account key's private_key is unusable: ${privateKey}`,
      fix: 'Create a new key.',
    };
  }
  const key: ServiceAccountKey = { clientEmail: json.client_email, privateKey };
  if (typeof json.private_key_id === 'string') key.privateKeyId = json.private_key_id;
  return { key };
}

/** Parses and checks a certificate credential: key and certificate must match and be in date. */
export function loadClientCertificate(
  input: {
    certPem: string;
    certFile: string;
    keyPem: string;
    passphrase: string | undefined;
    algorithm: 'RS256' | 'PS256';
  },
  now: number,
): { certificate: ClientCertificate } | KeyProblem {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(input.certPem);
  } catch (err) {
    return {
      key: 'certFile',
      problem: `not a PEM certificate (${(err as Error).message})`,
      fix: 'Point certFile at the certificate (.pem or .crt) uploaded to the app registration.',
    };
  }
  const privateKey = rsaKey(input.keyPem, input.passphrase);
  if (typeof privateKey === 'string') {
    return {
      key: 'keyFile',
      problem: privateKey,
      fix: privateKey.includes('passphrase')
        ? 'Set keyPassphraseFile (or keyPassphrase: "${VAR}") to the passphrase of the key.'
        : 'Point keyFile at the RSA private key (PEM) of the certificate.',
    };
  }
  if (!cert.checkPrivateKey(privateKey)) {
    return {
      key: 'keyFile',
      problem: `the private key does not belong to the certificate ${cert.subject.replace(/\n/g, ', ')}`,
      fix: 'Use the key that was generated with this certificate.',
    };
  }
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (now < notBefore) {
    return {
      key: 'certFile',
      problem: `the certificate is valid only from ${new Date(notBefore).toISOString()}`,
      fix: 'Check the clock of this machine, or use a certificate that is valid now.',
    };
  }
  if (now >= notAfter) {
    return {
      key: 'certFile',
      problem: `the certificate expired on ${new Date(notAfter).toISOString()}`,
      fix: 'Create a new certificate, upload it to the app registration and point certFile/keyFile at it.',
    };
  }
  return {
    certificate: {
      privateKey,
      thumbprintS256: createHash('sha256').update(cert.raw).digest('base64url'),
      algorithm: input.algorithm,
      notBefore,
      notAfter,
      subject: cert.subject.replace(/\n/g, ', '),
      certFile: input.certFile,
    },
  };
}

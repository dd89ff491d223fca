/**
 * Built-in provider presets: endpoints, scopes and mail servers for Google and Microsoft, so that a
 * connection needs little more than a client id. Every value here can be overridden per connection.
 * The values follow Google's OAuth and Gmail IMAP documentation and Microsoft's identity platform and
 * Exchange Online OAuth documentation.
 */
import type { GrantType, SaslMechanism, UpstreamServer } from './types.js';

export type MicrosoftCloud = 'global' | 'usgov' | 'china';
export const MICROSOFT_CLOUDS: readonly MicrosoftCloud[] = ['global', 'usgov', 'china'];

/** Microsoft tenant values that are not one tenant; app-only tokens need a real tenant. */
export const MICROSOFT_MULTI_TENANTS: readonly string[] = ['common', 'organizations', 'consumers'];

export interface ProviderPreset {
  authorizeUrl: string;
  tokenUrl: string;
  deviceCodeUrl?: string;
  userinfoUrl?: string;
  scopes: string[];
  authorizeParams: Record<string, string>;
  imap: UpstreamServer;
  smtp: UpstreamServer;
  pop3: UpstreamServer;
  sasl: SaslMechanism;
}

export const GOOGLE_MAIL_SCOPE = 'https://mail.google.com/';

/**
 * Google. `https://mail.google.com/` is the only scope that works for IMAP/POP/SMTP. `openid email
 * profile` ride along so the token response carries an id_token with the consenting account's email
 * and name (Google allows mixing them with the Gmail scope); the userinfo endpoint is the fallback.
 * `access_type=offline` asks for a refresh token and `prompt=consent` makes Google send one again on
 * re-consent (it otherwise only does on the very first consent).
 * There is no device flow: Google refuses Gmail scopes on it (`invalid_scope`).
 */
export function googlePreset(): ProviderPreset {
  return {
    authorizeUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
    tokenUrl: 'https://oauth2.googleapis.com/token',
    userinfoUrl: 'https://openidconnect.googleapis.com/v1/userinfo',
    scopes: [GOOGLE_MAIL_SCOPE, 'openid', 'email', 'profile'],
    authorizeParams: { access_type: 'offline', prompt: 'consent' },
    imap: { host: 'imap.gmail.com', port: 993, tls: 'implicit' },
    smtp: { host: 'smtp.gmail.com', port: 465, tls: 'implicit' },
    pop3: { host: 'pop.gmail.com', port: 995, tls: 'implicit' },
    sasl: 'xoauth2',
  };
}

interface CloudFacts {
  login: string;
  /** Delegated (user) scopes for IMAP, POP and SMTP on this cloud. */
  delegatedScopes: string[];
  /** The one scope of an app-only (client_credentials) token request. */
  appScope: string;
  mailHost: string;
  smtpHost: string;
  /** Microsoft Graph on this cloud: a separate resource, so its tokens are separate token requests. */
  graphHost: string;
}

const CLOUDS: Record<MicrosoftCloud, CloudFacts> = {
  global: {
    login: 'https://login.microsoftonline.com',
    delegatedScopes: [
      'https://outlook.office.com/IMAP.AccessAsUser.All',
      'https://outlook.office.com/POP.AccessAsUser.All',
      'https://outlook.office.com/SMTP.Send',
    ],
    appScope: 'https://outlook.office365.com/.default',
    mailHost: 'outlook.office365.com',
    smtpHost: 'smtp.office365.com',
    graphHost: 'graph.microsoft.com',
  },
  usgov: {
    login: 'https://login.microsoftonline.us',
    delegatedScopes: [
      'https://outlook.office365.us/IMAP.AccessAsUser.All',
      'https://outlook.office365.us/POP.AccessAsUser.All',
      'https://outlook.office365.us/SMTP.Send',
    ],
    appScope: 'https://outlook.office365.us/.default',
    mailHost: 'outlook.office365.us',
    smtpHost: 'smtp.office365.us',
    graphHost: 'graph.microsoft.us',
  },
  // 21Vianet only accepts the `.default` scope for mail (email-oauth2-proxy #255).
  china: {
    login: 'https://login.partner.microsoftonline.cn',
    delegatedScopes: ['https://partner.outlook.cn/.default'],
    appScope: 'https://partner.outlook.cn/.default',
    mailHost: 'partner.outlook.cn',
    smtpHost: 'smtp.partner.outlook.cn',
    graphHost: 'microsoftgraph.chinacloudapi.cn',
  },
};

/**
 * Microsoft identity platform v2.0 for Exchange Online. Delegated grants get the IMAP/POP/SMTP scopes plus
 * `offline_access` (for a refresh token) and the OIDC scopes (for an id_token naming the consenting user;
 * they may be mixed with the Outlook resource, unlike Graph scopes). App-only (client_credentials) uses
 * the single `.default` scope of the Exchange resource and a tenant-specific token URL.
 * Consumer accounts (Outlook.com) submit mail via smtp-mail.outlook.com.
 */
export function microsoftPreset(options: {
  tenantId: string;
  cloud: MicrosoftCloud;
  grant: GrantType;
}): ProviderPreset {
  const cloud = CLOUDS[options.cloud];
  const base = `${cloud.login}/${encodeURIComponent(options.tenantId)}/oauth2/v2.0`;
  const scopes =
    options.grant === 'client_credentials'
      ? [cloud.appScope]
      : [...cloud.delegatedScopes, 'offline_access', 'openid', 'email', 'profile'];
  const smtpHost =
    options.cloud === 'global' && options.tenantId === 'consumers' ? 'smtp-mail.outlook.com' : cloud.smtpHost;
  return {
    authorizeUrl: `${base}/authorize`,
    tokenUrl: `${base}/token`,
    deviceCodeUrl: `${base}/devicecode`,
    scopes,
    authorizeParams: {},
    imap: { host: cloud.mailHost, port: 993, tls: 'implicit' },
    smtp: { host: smtpHost, port: 587, tls: 'starttls' },
    pop3: { host: cloud.mailHost, port: 995, tls: 'implicit' },
    // Exchange Online speaks XOAUTH2 only.
    sasl: 'xoauth2',
  };
}

/**
 * Graph sending on a Microsoft cloud: the v1.0 API of the cloud's Graph host, and the delegated
 * `Mail.Send` scope (app-only: the `.default` scope, which carries the application permission).
 */
export function microsoftGraphPreset(options: { cloud: MicrosoftCloud; grant: GrantType }): {
  url: string;
  scopes: string[];
} {
  const host = CLOUDS[options.cloud].graphHost;
  return {
    url: `https://${host}/v1.0`,
    scopes: [
      options.grant === 'client_credentials' ? `https://${host}/.default` : `https://${host}/Mail.Send`,
    ],
  };
}

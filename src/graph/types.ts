/**
 * The seam between the SMTP front in Graph mode and the Graph sender: the SMTP transaction ends in
 * one `OutgoingMessage`, and the sender's `SendOutcome` becomes the DATA (or last BDAT) reply.
 * Nothing here knows SMTP wire text or HTTP; `proxy/smtp/replies.ts` maps outcomes to replies and
 * `graph/` maps Graph's answers to outcomes.
 */

/** One message as the SMTP client handed it over. */
export interface OutgoingMessage {
  /** MAIL FROM's reverse-path without the angle brackets ('' for the null sender `<>`). */
  from: string;
  /** RCPT TO forward-paths without brackets, in the order given, each once (compared case-insensitively). */
  recipients: string[];
  /** The message bytes: after dot-unstuffing (DATA) or the chunks joined (BDAT); lines end in CRLF. */
  data: Buffer;
}

/** How sending one message ended; each kind has one SMTP reply. */
export type SendOutcome =
  /** Accepted for delivery (Graph 202): 250. */
  | { kind: 'sent' }
  /** Try again later (429, 5xx, network, token endpoint down): 451 4.x.x. */
  | { kind: 'temporary'; reason: string; retryAfterSeconds?: number }
  /** The mailbox may not send as this sender (403 ErrorSendAsDenied): 550 5.7.60. */
  | { kind: 'send-as-denied'; reason: string }
  /** Larger than Graph or the tenant accepts: 552 5.3.4. */
  | { kind: 'too-large'; reason: string }
  /** Graph refused the message itself (4xx other than the above): 554 5.6.0. */
  | { kind: 'rejected'; reason: string }
  /** No usable grant for Graph (revoked, or consented without the Graph scope): 554 5.7.0 + what to do. */
  | { kind: 'needs-consent'; reason: string };

/** Sends one message for the account a session logged in as. Never throws: every failure is an outcome. */
export interface MessageSender {
  send(message: OutgoingMessage, signal: AbortSignal): Promise<SendOutcome>;
}

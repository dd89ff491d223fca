/**
 * Every size and time limit of the Graph sender, each with the reason for its value. Graph documents
 * its limits in "MB" without saying whether that means 10^6 or 2^20 bytes; where it matters we take
 * the smaller reading, so a request that fits here fits under either.
 */

/**
 * The largest request body we send to Graph. Graph refuses REST requests over "4 MB" with 413; 4,000,000
 * is below both 4 * 10^6 and 4 * 2^20, and a base64 MIME body is exactly 4/3 of the message, so sendMail
 * with MIME carries messages up to 3,000,000 bytes.
 */
export const GRAPH_MAX_REQUEST_BYTES = 4_000_000;

/**
 * Attachments smaller than this go in one POST; larger ones through an upload session. Graph says
 * "under 3 MB"; the POST also has to fit GRAPH_MAX_REQUEST_BYTES once base64-encoded (4/3 of 3,000,000
 * is exactly that), so the sender also checks the encoded body.
 */
export const GRAPH_MAX_ATTACHMENT_POST_BYTES = 3_000_000;

/**
 * Bytes per upload-session PUT. Graph allows at most 4 MB per range; 12 * 320 KiB = 3,932,160 stays
 * under 4,000,000 and is a multiple of 320 KiB, the granularity other Graph upload sessions insist on.
 */
export const GRAPH_UPLOAD_CHUNK_BYTES = 12 * 320 * 1024;

/**
 * Exchange Online's default MaxSendSize is "35 MB", which Exchange counts in binary megabytes and
 * measures on the encoded message, i.e. the MIME bytes the client gave us.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 35 * 1024 * 1024;

/** One Graph request may take this long (a 4 MB body over a slow uplink included) before we give up. */
export const DEFAULT_GRAPH_TIMEOUT_MS = 60_000;

/** Deleting a draft after a failure is best effort; it must not keep a session waiting long. */
export const DRAFT_CLEANUP_TIMEOUT_MS = 10_000;

/**
 * Graph accepts only custom `x-` headers in internetMessageHeaders, and reportedly at most five per
 * message (InvalidInternetMessageHeaderCollection beyond that); we pass the first five.
 */
export const GRAPH_MAX_INTERNET_HEADERS = 5;

/** A Retry-After longer than this is capped: a broken header must not block a mailbox for days. */
export const MAX_RETRY_AFTER_SECONDS = 3600;

/** Mailboxes the throttle remembers at once; the least recently throttled are forgotten first. */
export const THROTTLE_MAX_MAILBOXES = 10_000;

/** Graph's error text is passed to clients and logs on one line of at most this many characters. */
export const MAX_REASON_CHARS = 200;

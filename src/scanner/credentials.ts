import { ScangateError } from '../errors.js';

/**
 * The scanner's credentials never leave scanner/ in any spelling. Anchore names the account in some
 * of its texts ("no active policy to evaluate: <user>"); on Sysdig Secure the user is the API token;
 * a proxy in front of the scanner may echo the request's `Authorization` header, and a misconfigured
 * one may put the URL (credentials URL-encoded) in its error page. Every text that comes from the
 * scanner, and every error this module throws, goes through a redactor built from the credentials.
 */
export type Redactor = (text: string) => string;

export const REDACTED = '[redacted]';

/**
 * Longest user or password the redactor takes (ANCHORE_CLI_USER / ANCHORE_CLI_PASS are refused at
 * start above it). Its one pattern holds every spelling of both; at this length V8 compiles it in
 * under 0.25 s, and some ten times longer it fails to compile at all (bench/ figures in the tests).
 */
export const MAX_SECRET_LENGTH = 1024;

/** Shortest tail of a secret that is still removed when a text was cut in the middle of it. */
const MIN_CUT_TAIL = 4;
/** Shortest base64 run, of a secret inside a longer encoded text, worth removing. */
const MIN_BASE64_CORE = 6;

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const toBase64Url = (b64: string): string => b64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

/**
 * The base64 text of `bytes` wherever they sit in a longer encoded text: the encoding depends on the
 * offset mod 3, so for each offset keep only the groups of four characters made of the secret alone.
 */
function base64Cores(bytes: Buffer): string[] {
  const cores: string[] = [];
  for (let shift = 0; shift < 3; shift += 1) {
    const padded = Buffer.concat([Buffer.alloc(shift), bytes]);
    const text = padded.toString('base64');
    const firstGroup = shift === 0 ? 0 : 1;
    const wholeGroups = Math.floor(padded.length / 3);
    const core = text.slice(firstGroup * 4, wholeGroups * 4);
    if (core.length >= MIN_BASE64_CORE) cores.push(core, toBase64Url(core));
  }
  return cores;
}

/** Every spelling of one secret that a log line, a denial or an error page could carry. */
export function secretSpellings(secret: string): string[] {
  if (secret === '') return [];
  const bytes = Buffer.from(secret, 'utf8');
  const b64 = bytes.toString('base64');
  return [
    secret,
    JSON.stringify(secret).slice(1, -1),
    // Both throw on a lone surrogate: given the text as UTF-8 carries it (U+FFFD), as URLSearchParams does.
    encodeURIComponent(bytes.toString('utf8')),
    encodeURI(bytes.toString('utf8')),
    new URLSearchParams({ s: secret }).toString().slice(2),
    b64,
    b64.replace(/=+$/, ''),
    toBase64Url(b64),
    ...base64Cores(bytes),
    bytes.toString('hex'),
  ];
}

/**
 * The length of the longest tail of `text` that is the start (MIN_CUT_TAIL to n-1 characters) of
 * `secret`, both lower-cased; 0 when there is none. Plain string compares, not a regular expression:
 * a pattern of every prefix grows with the square of a long token's length (V8 runs out of memory
 * compiling it for a 4 KB secret).
 */
function cutTailLength(lowerText: string, lowerSecret: string): number {
  for (let k = Math.min(lowerSecret.length - 1, lowerText.length); k >= MIN_CUT_TAIL; k -= 1) {
    if (lowerText.endsWith(lowerSecret.slice(0, k))) return k;
  }
  return 0;
}

/**
 * Builds the redactor for a user and password: each secret, and `user:password` as the Basic auth
 * header carries it, in every spelling of secretSpellings, matched without regard to case (so `%2f`
 * and `%2F`, `ADMIN` and `admin`), longest first. A text cut in the middle of a secret loses the cut
 * tail as well. The cost is paid on scanner answers and errors only, never on a cache hit.
 */
export function createRedactor(credentials: { readonly user: string; readonly password: string }): Redactor {
  const secrets = [credentials.user, credentials.password].filter((s) => s !== '');
  if (secrets.length === 0) return (text) => text;
  // Never a message with the secret in it: a compile error would quote the whole pattern.
  if (secrets.some((s) => s.length > MAX_SECRET_LENGTH)) {
    throw new ScangateError('SCANGATE_ERR_CONFIG', `scanner user and password must be at most ${MAX_SECRET_LENGTH} characters`);
  }
  const whole = credentials.password === '' ? [] : [`${credentials.user}:${credentials.password}`];
  const spellings = [...new Set([...whole, ...secrets].flatMap(secretSpellings))].sort((a, b) => b.length - a.length);
  const anywhere = new RegExp(spellings.map(escapeRegExp).join('|'), 'giu');
  // V8 compiles a pattern on its first use: here, at start-up, rather than in the first scan's error path.
  anywhere.test('');
  // The tails a cut can leave: the first 4..n-1 characters of a raw secret at the very end.
  const lowerSecrets = secrets.filter((s) => s.length > MIN_CUT_TAIL).map((s) => s.toLowerCase());
  return (text) => {
    const out = text.replace(anywhere, REDACTED);
    const lower = out.toLowerCase();
    // toLowerCase keeps the length for all but a few non-ASCII letters; then the tail is left alone.
    if (lower.length !== out.length) return out;
    const cut = Math.max(0, ...lowerSecrets.map((s) => cutTailLength(lower, s)));
    return cut > 0 ? out.slice(0, out.length - cut) + REDACTED : out;
  };
}

/** Errors already scrubbed: an error passes several layers of the client, each of which scrubs. */
const scrubbed = new WeakSet<Error>();

/**
 * The same error with its message redacted and its cause dropped (a cause may be an axios error that
 * holds the request config, auth included, or a JSON error that quotes the scanner's body). Once per
 * error: a second call returns it untouched (redacting `[redacted]` again could mangle it when a
 * secret is a piece of that word).
 */
export function scrubError<E>(error: E, redact: Redactor): E {
  if (!(error instanceof Error)) return new ScangateError('SCANGATE_ERR_INTERNAL', redact(String(error))) as E;
  if (scrubbed.has(error)) return error;
  scrubbed.add(error);
  error.message = redact(error.message);
  if ('cause' in error && !(error.cause instanceof ScangateError)) delete error.cause;
  else if (error.cause instanceof ScangateError) scrubError(error.cause, redact);
  if (error.stack !== undefined) error.stack = redact(error.stack);
  return error;
}

/** 127.0.0.0/8, ::1 (and its IPv4-mapped form) and `localhost` names: traffic that never leaves the host. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase().replace(/\.$/, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (host === '::1' || host === '0:0:0:0:0:0:0:1') return true;
  // WHATWG URL writes an IPv4-mapped 127.x.y.z as ::ffff:7fxx:yyzz.
  if (/^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(host)) return true;
  return /^127(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(host);
}

/**
 * The start-up warning for Basic auth sent in clear: an http:// scanner URL whose host is not the
 * loopback. Names the origin (never the credentials); undefined when there is nothing to warn about.
 */
export function plainHttpAuthWarning(scannerUrl: string): string | undefined {
  const url = new URL(scannerUrl);
  if (url.protocol !== 'http:' || isLoopbackHost(url.hostname)) return undefined;
  return `scanner credentials go over plain HTTP to ${url.host}: anyone on the network path can read them; use an https:// ANCHORE_CLI_URL (ANCHORE_CA_FILE for a private CA)`;
}

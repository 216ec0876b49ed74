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
 * start above it). Its patterns hold every spelling of both, each character of the per-character
 * spellings as an alternation of its encodings; at this length V8 compiles them at start-up in about
 * a second for the worst characters (non-ASCII, measured in docs/SECURITY.md), and much longer
 * secrets would make the patterns fail to compile at all.
 */
export const MAX_SECRET_LENGTH = 1024;

/** Shortest tail of a secret that is still removed when a text was cut in the middle of it. */
const MIN_CUT_TAIL = 4;
/** Shortest base64 run, of a secret inside a longer encoded text, worth removing. */
const MIN_BASE64_CORE = 6;

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const escapeInClass = (s: string): string => s.replace(/[\]\\^-]/g, '\\$&');

const toBase64Url = (b64: string): string => b64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0');

/** windows-1252's characters for the bytes 0x80-0x9f; the five it leaves undefined read as C1 controls (WHATWG). */
const CP1252_80_9F = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ';

/** A byte as latin1 and as windows-1252 read it (one character, or two for 0x80-0x9f). */
function byteReadings(b: number): string[] {
  const latin1 = String.fromCharCode(b);
  const cp1252 = b >= 0x80 && b < 0xa0 ? (CP1252_80_9F[b - 0x80] ?? latin1) : latin1;
  return cp1252 === latin1 ? [latin1] : [latin1, cp1252];
}

/** The one byte windows-1252 (or latin1) writes a character as, for characters above ASCII it holds. */
function singleByte(cp: number): number | undefined {
  if (cp >= 0xa0 && cp <= 0xff) return cp;
  const i = CP1252_80_9F.indexOf(String.fromCodePoint(cp));
  return i >= 0 ? 0x80 + i : undefined;
}

/**
 * HTML's named character references for what a secret can hold: HTML 4's (what PHP's htmlentities
 * writes: Latin-1, Greek, typographic punctuation) and HTML 5's names for ASCII punctuation.
 */
const HTML_NAMES: ReadonlyMap<number, readonly string[]> = (() => {
  const names = new Map<number, string[]>();
  const add = (cp: number, name: string): void => {
    if (name !== '_') names.set(cp, [...(names.get(cp) ?? []), name]);
  };
  const latin1 =
    'nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 sup3 acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest ' +
    'Agrave Aacute Acirc Atilde Auml Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig ' +
    'agrave aacute acirc atilde auml aring aelig ccedil egrave eacute ecirc euml igrave iacute icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide oslash ugrave uacute ucirc uuml yacute thorn yuml';
  latin1.split(' ').forEach((name, i) => {
    add(0xa0 + i, name);
  });
  const greek = 'Alpha Beta Gamma Delta Epsilon Zeta Eta Theta Iota Kappa Lambda Mu Nu Xi Omicron Pi Rho _ Sigma Tau Upsilon Phi Chi Psi Omega';
  greek.split(' ').forEach((name, i) => {
    add(0x391 + i, name);
  });
  greek
    .toLowerCase()
    .replace('_', 'sigmaf')
    .split(' ')
    .forEach((name, i) => {
      add(0x3b1 + i, name);
    });
  const listed: Array<[string, string]> = [
    ['\t', 'Tab'], ['\n', 'NewLine'], ['!', 'excl'], ['"', 'quot QUOT'], ['#', 'num'], ['$', 'dollar'], ['%', 'percnt'], ['&', 'amp AMP'],
    ["'", 'apos'], ['(', 'lpar'], [')', 'rpar'], ['*', 'ast midast'], ['+', 'plus'], [',', 'comma'], ['.', 'period'], ['/', 'sol'],
    [':', 'colon'], [';', 'semi'], ['<', 'lt LT'], ['=', 'equals'], ['>', 'gt GT'], ['?', 'quest'], ['@', 'commat'], ['[', 'lsqb lbrack'],
    ['\\', 'bsol'], [']', 'rsqb rbrack'], ['^', 'Hat'], ['_', 'lowbar UnderBar'], ['`', 'grave DiacriticalGrave'], ['{', 'lcub lbrace'],
    ['|', 'verbar vert VerticalLine'], ['}', 'rcub rbrace'], ['ϑ', 'thetasym'], ['ϒ', 'upsih'], ['ϖ', 'piv'], ['Œ', 'OElig'], ['œ', 'oelig'],
    ['Š', 'Scaron'], ['š', 'scaron'], ['Ÿ', 'Yuml'], ['ƒ', 'fnof'], ['ˆ', 'circ'], ['˜', 'tilde'], ['\u2002', 'ensp'], ['\u2003', 'emsp'],
    ['\u2009', 'thinsp'], ['–', 'ndash'], ['—', 'mdash'], ['‘', 'lsquo'], ['’', 'rsquo'], ['‚', 'sbquo'], ['“', 'ldquo'], ['”', 'rdquo'],
    ['„', 'bdquo'], ['†', 'dagger'], ['‡', 'Dagger'], ['•', 'bull'], ['…', 'hellip'], ['‰', 'permil'], ['′', 'prime'], ['″', 'Prime'],
    ['‹', 'lsaquo'], ['›', 'rsaquo'], ['‾', 'oline'], ['⁄', 'frasl'], ['€', 'euro'], ['™', 'trade'],
  ];
  for (const [ch, list] of listed) for (const name of list.split(' ')) add(ch.codePointAt(0) ?? 0, name);
  return names;
})();

/** JSON's two-character escapes (`/` is escaped by some encoders, PHP's among them). */
const JSON_SHORT: Readonly<Record<string, string>> = { '"': '\\"', '\\': '\\\\', '/': '\\/', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** One way to write a character: its first character(s) (any one of them) and the pattern of the rest. */
interface CharForm {
  readonly first: readonly string[];
  readonly rest: string;
}

const literalForm = (text: string): CharForm => ({ first: [text.slice(0, 1)], rest: escapeRegExp(text.slice(1)) });

/**
 * Every way a text may carry one character (a code point) of a secret, other than the character
 * itself: percent-encoded (each UTF-8 byte, or the one windows-1252 byte), an HTML reference
 * (decimal or hex, any leading zeros, or a name), JSON escapes (`\u00fc` per UTF-16 unit, `\"`),
 * its UTF-8 bytes read as latin1 or windows-1252 (mojibake: `Ã¼` for `ü`), `?` or U+FFFD where a
 * charset could not hold it, `+` for a space (form encoding).
 */
function charForms(ch: string): CharForm[] {
  const cp = ch.codePointAt(0) ?? 0;
  const bytes = [...Buffer.from(ch, 'utf8')];
  const forms: CharForm[] = [literalForm(bytes.map((b) => `%${hex(b, 2)}`).join(''))];
  const single = singleByte(cp);
  if (single !== undefined) forms.push(literalForm(`%${hex(single, 2)}`));
  // `0*` before a first digit that is not 0: no backtracking in the zeros.
  forms.push({ first: ['&'], rest: cp === 0 ? '#(?:0+|x0+);' : `#(?:0*${cp}|x0*${cp.toString(16)});` });
  for (const name of HTML_NAMES.get(cp) ?? []) forms.push(literalForm(`&${name};`));
  forms.push(literalForm([...Array(ch.length).keys()].map((i) => `\\u${hex(ch.charCodeAt(i), 4)}`).join('')));
  const short = JSON_SHORT[ch];
  if (short !== undefined) forms.push(literalForm(short));
  if (cp > 0x7f) {
    const [lead = 0, ...next] = bytes;
    const classOf = (chars: readonly string[]): string => (chars.length === 1 ? escapeRegExp(chars[0] ?? '') : `[${chars.map(escapeInClass).join('')}]`);
    forms.push({ first: byteReadings(lead), rest: next.map((b) => classOf(byteReadings(b))).join('') });
    forms.push({ first: ['?'], rest: '' }, { first: ['\ufffd'], rest: '' });
  }
  if (ch === ' ') forms.push({ first: ['+'], rest: '' });
  return forms;
}

/** Whether the redactor's patterns (flags `iu`) take `a` for `b`. */
const sameLetter = (a: string, b: string): boolean => new RegExp(`^${escapeRegExp(a)}$`, 'iu').test(b);

/**
 * The pattern of one character in any of its forms. At any place of a text at most one alternative
 * matches (the raw character is refused where one of its own encodings starts, and a one-character
 * form that the raw character already matches is dropped), so a secret's pattern never backtracks
 * into another reading of the same text: its cost stays linear in the secret's length.
 */
function charPattern(ch: string): string {
  const forms = charForms(ch).filter((f) => f.rest !== '' || !f.first.some((c) => sameLetter(c, ch)));
  const clashing = forms.filter((f) => f.first.some((c) => sameLetter(c, ch))).map((f) => f.rest);
  const raw = escapeRegExp(ch) + (clashing.length > 0 ? `(?!${clashing.join('|')})` : '');
  const first = (f: CharForm): string => (f.first.length === 1 ? escapeRegExp(f.first[0] ?? '') : `[${f.first.map(escapeInClass).join('')}]`);
  return `(?:${[raw, ...forms.map((f) => first(f) + f.rest)].join('|')})`;
}

/** A secret written character by character, each character in any of its forms, mixed as they come. */
function perCharacterPattern(secret: string, memo: Map<string, string>): string {
  let pattern = '';
  for (const ch of Array.from(secret)) {
    let unit = memo.get(ch);
    if (unit === undefined) {
      unit = charPattern(ch);
      memo.set(ch, unit);
    }
    pattern += unit;
  }
  return pattern;
}

/**
 * The base64 texts of `bytes`: alone (padded or not), and wherever they sit in a longer encoded text.
 * The encoding depends on the offset mod 3, so for each offset keep only the groups of four characters
 * made of the secret alone (the core), and the last group as the secret alone would end.
 */
function base64Spellings(bytes: Buffer): Array<{ readonly core: string; readonly tail: string }> {
  const spellings: Array<{ core: string; tail: string }> = [];
  for (let shift = 0; shift < 3; shift += 1) {
    const padded = Buffer.concat([Buffer.alloc(shift), bytes]);
    const text = padded.toString('base64');
    const wholeGroups = Math.floor(padded.length / 3);
    const core = text.slice(shift === 0 ? 0 : 4, wholeGroups * 4);
    if (shift === 0 && core.length < MIN_BASE64_CORE) spellings.push({ core: text.replace(/=+$/, ''), tail: '' });
    else if (core.length >= MIN_BASE64_CORE) spellings.push({ core, tail: shift === 0 ? text.slice(wholeGroups * 4).replace(/=+$/, '') : '' });
  }
  return spellings;
}

/**
 * Base64 and base64url (`-` `_` for `+` `/`) alike, with any whitespace between two characters (MIME
 * lines of 76, groups split by spaces), padding optional. Case-sensitive, as base64 is (matched in its
 * own pass: case-insensitive, the whitespace makes V8's pattern ten times slower on a long text).
 */
function base64Pattern({ core, tail }: { readonly core: string; readonly tail: string }): string {
  const char = (c: string): string => (c === '+' ? '[+-]' : c === '/' ? '[/_]' : c);
  const seq = (s: string): string => Array.from(s, char).join('\\s*');
  return seq(core) + (tail === '' ? '' : `(?:\\s*${seq(tail)}(?:\\s*=){0,2})?`);
}

/** A pattern and the length of the shortest text it matches: alternatives are tried longest first. */
interface Alternative {
  readonly pattern: string;
  readonly minLength: number;
}

const alternation = (alternatives: readonly Alternative[]): string =>
  [...new Map(alternatives.map((a) => [a.pattern, a])).values()]
    .sort((a, b) => b.minLength - a.minLength)
    .map((a) => a.pattern)
    .join('|');

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

/** Where a global pattern matches in `text`, in order (exec on the pattern itself: no copy to compile again). */
function* matchSpans(text: string, pattern: RegExp): Generator<[number, number], undefined> {
  pattern.lastIndex = 0;
  for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
    yield [m.index, m.index + m[0].length];
  }
}

/** The places any of the patterns matches in `text`, merged where they overlap or touch, in order. */
function* mergedSpans(text: string, patterns: readonly RegExp[]): Generator<[number, number], undefined> {
  const sources = patterns.map((p) => matchSpans(text, p));
  const heads = sources.map((g) => g.next().value);
  let open: [number, number] | undefined;
  for (;;) {
    let next = -1;
    heads.forEach((h, i) => {
      if (h !== undefined && (next < 0 || h[0] < (heads[next]?.[0] ?? Infinity))) next = i;
    });
    const span = heads[next];
    if (span === undefined) break;
    heads[next] = sources[next]?.next().value;
    if (open !== undefined && span[0] <= open[1]) open[1] = Math.max(open[1], span[1]);
    else {
      if (open !== undefined) yield open;
      open = span;
    }
  }
  if (open !== undefined) yield open;
}

/**
 * Builds the redactor for a user and password. Each secret, and `user:password` as the Basic auth
 * header carries it, is replaced by `[redacted]`, matched without regard to letter case (so `%2f` and
 * `%2F`, `ADMIN` and `admin`), in these spellings:
 * - raw, and character by character in any mix of the forms of charForms (URL, form and strict
 *   percent-encoding, HTML references, JSON escapes, another charset's reading of the UTF-8 bytes);
 *   `user:password` needs no such spelling of its own, its user and password are each removed;
 * - hex of the UTF-8 bytes, and base64 or base64url of them (alone, or inside a longer encoded text,
 *   at each of the three alignments), also with whitespace between the characters.
 * A text cut in the middle of a raw secret loses the cut tail as well.
 *
 * Cost: two passes of V8's regular expressions over the text, each linear in the text's length for
 * secrets of bounded length (every pattern is a fixed sequence in which at most one alternative
 * matches at a place); patterns of every prefix are not used (see cutTailLength). Measured on a
 * 25 MB scanner answer in docs/SECURITY.md. The cost is paid on scanner answers and errors only,
 * never on a cache hit.
 */
export function createRedactor(credentials: { readonly user: string; readonly password: string }): Redactor {
  const secrets = [credentials.user, credentials.password].filter((s) => s !== '');
  if (secrets.length === 0) return (text) => text;
  // Never a message with the secret in it: a compile error would quote the whole pattern.
  if (secrets.some((s) => s.length > MAX_SECRET_LENGTH)) {
    throw new ScangateError('SCANGATE_ERR_CONFIG', `scanner user and password must be at most ${MAX_SECRET_LENGTH} characters`);
  }
  const whole = credentials.password === '' ? [] : [`${credentials.user}:${credentials.password}`];
  const memo = new Map<string, string>();
  const texts: Alternative[] = [];
  const encoded: Alternative[] = [];
  for (const secret of [...whole, ...secrets]) {
    const bytes = Buffer.from(secret, 'utf8');
    texts.push({ pattern: escapeRegExp(secret), minLength: secret.length }, { pattern: bytes.toString('hex'), minLength: 2 * bytes.length });
    if (secret !== whole[0]) texts.push({ pattern: perCharacterPattern(secret, memo), minLength: Array.from(secret).length });
    for (const b64 of base64Spellings(bytes)) {
      const minLength = b64.core.length + b64.tail.length;
      encoded.push({ pattern: base64Pattern(b64), minLength });
      // Also without regard to case (a text upper-cased after it was encoded), without whitespace.
      for (const text of b64.tail === '' ? [b64.core] : [b64.core + b64.tail, b64.core]) {
        texts.push({ pattern: escapeRegExp(text), minLength: text.length }, { pattern: escapeRegExp(toBase64Url(text)), minLength: text.length });
      }
    }
  }
  const patterns = [new RegExp(alternation(texts), 'giu'), new RegExp(alternation(encoded), 'g')];
  // V8 compiles a pattern on its first use: here, at start-up, rather than in the first scan's error path.
  for (const p of patterns) p.test('');
  // The tails a cut can leave: the first 4..n-1 characters of a raw secret at the very end.
  const lowerSecrets = secrets.filter((s) => s.length > MIN_CUT_TAIL).map((s) => s.toLowerCase());
  return (text) => {
    let out = '';
    let from = 0;
    for (const [start, end] of mergedSpans(text, patterns)) {
      out += text.slice(from, start) + REDACTED;
      from = end;
    }
    out += text.slice(from);
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

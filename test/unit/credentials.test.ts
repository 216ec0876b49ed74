/**
 * Scanner credentials (issue 7, section 5): the redactor's spellings, the refusal of credentials in
 * ANCHORE_CLI_URL, the start-up warning for Basic auth over plain HTTP, and the "scanner rejected the
 * credentials" line logged again when refusals start again after a success (rate-limited).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { composeScangate } from '../../src/composition.js';
import { parseConfig, URL_CREDENTIALS_PROBLEM } from '../../src/config.js';
import { ConfigError, ScannerAuthError, ScannerProtocolError } from '../../src/errors.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { createRedactor, isLoopbackHost, MAX_SECRET_LENGTH, plainHttpAuthWarning, REDACTED, scrubError } from '../../src/scanner/credentials.js';
import { createScannerTransport } from '../../src/scanner/resilience.js';
import { LogCapture } from '../helpers/harness.js';

const USER = 'svc-Scanner';
const PASS = 's3cr3t/P+ss word&=ü';

describe('the redactor: every spelling of the credentials', () => {
  const redact = createRedactor({ user: USER, password: PASS });
  const basic = Buffer.from(`${USER}:${PASS}`).toString('base64');
  const spellings: Array<[string, string]> = [
    ['raw password', PASS],
    ['raw user', USER],
    ['upper case', PASS.toUpperCase()],
    ['lower case user', USER.toLowerCase()],
    ['Basic header value', `Basic ${basic}`],
    ['Basic value without padding', basic.replace(/=+$/, '')],
    ['base64url of user:password', Buffer.from(`${USER}:${PASS}`).toString('base64url')],
    ['base64 of the password alone', Buffer.from(PASS).toString('base64')],
    ['URL-encoded', encodeURIComponent(PASS)],
    ['URL-encoded, lower-case hex', encodeURIComponent(PASS).toLowerCase()],
    ['form-encoded', new URLSearchParams({ p: PASS }).toString().slice(2)],
    ['encodeURI', encodeURI(PASS)],
    ['JSON-escaped', JSON.stringify(PASS).slice(1, -1)],
    ['hex', Buffer.from(PASS).toString('hex')],
    ['hex, upper case', Buffer.from(PASS).toString('hex').toUpperCase()],
  ];
  for (const [label, spelling] of spellings) {
    it(`${label}: removed, the text around it kept`, () => {
      const out = redact(`before ${spelling} after`);
      assert.ok(out.startsWith('before ') && out.endsWith(' after'), out);
      assert.ok(out.includes(REDACTED), out);
      assert.ok(!out.includes(spelling), out);
    });
  }

  it('base64 of the password inside a longer encoded text, at each of the three alignments', () => {
    for (const prefix of ['', 'x', 'xy', '{"password":"']) {
      const encoded = Buffer.from(`${prefix}${PASS}", "more": 1}`).toString('base64');
      const out = redact(`blob ${encoded}`);
      assert.ok(out.includes(REDACTED), `${JSON.stringify(prefix)}: ${out}`);
      // What is left decodes to at most two characters of the password.
      const left = out.split(REDACTED).map((part) => Buffer.from(part.replace(/^blob /, ''), 'base64').toString('latin1'));
      assert.ok(!left.some((t) => t.includes(PASS.slice(0, 3)) || t.includes(PASS.slice(-3))), `${JSON.stringify(prefix)}: ${left.join(' | ')}`);
    }
  });

  it('a text cut in the middle of a secret loses the cut tail too', () => {
    assert.equal(redact(`refused for ${PASS.slice(0, 9)}`), `refused for ${REDACTED}`);
    assert.equal(redact(`unknown user ${USER.slice(0, 5)}`), `unknown user ${REDACTED}`);
    // Three characters are too few to tell from ordinary text.
    assert.equal(redact('ends with svc'), 'ends with svc');
  });

  it('leaves a text without credentials unchanged; empty credentials redact nothing', () => {
    const text = 'scanner refused add_image (HTTP 400: bad tag docker.io/library/nginx:1.25)';
    assert.equal(redact(text), text);
    assert.equal(createRedactor({ user: '', password: '' })(text), text);
  });

  it('regular-expression characters in a secret are matched literally', () => {
    const r = createRedactor({ user: 'a.b', password: '(x|y)*[z]\\d{2}$^' });
    assert.equal(r('user axb ok'), 'user axb ok');
    assert.equal(r('user a.b, pass (x|y)*[z]\\d{2}$^ end'), `user ${REDACTED}, pass ${REDACTED} end`);
  });

  it('scrubError redacts the message and the stack and drops a foreign cause', () => {
    const cause = new SyntaxError(`Unexpected token in "${PASS}"`);
    const error = scrubError(new ScannerProtocolError(`scanner said ${PASS}`, { cause }), redact);
    assert.ok(error instanceof ScannerProtocolError);
    assert.equal(error.message, `scanner said ${REDACTED}`);
    assert.equal(error.cause, undefined);
    assert.ok(!String(error.stack).includes(PASS));
  });

  it('secrets up to MAX_SECRET_LENGTH, of any characters, are redacted, cut tails too; longer ones are refused without being repeated', () => {
    for (const ch of ['x', 'ü', '"', '😀']) {
      const secret = ch.repeat(MAX_SECRET_LENGTH / ch.length);
      const r = createRedactor({ user: secret, password: secret.split('').reverse().join('') });
      assert.equal(r(`a ${secret} b`), `a ${REDACTED} b`, JSON.stringify(ch));
      assert.equal(r(`cut ${secret.slice(0, 600)}`), `cut ${REDACTED}`, JSON.stringify(ch));
    }
    const long = 'L'.repeat(MAX_SECRET_LENGTH + 1);
    assert.throws(
      () => createRedactor({ user: 'u', password: long }),
      (error: unknown) => error instanceof Error && !error.message.includes('LLLL') && /at most 1024 characters/.test(error.message),
    );
  });

  it('scrubError works once per error: a second pass does not redact the redaction', () => {
    const r = createRedactor({ user: 'act', password: '' });
    const error = scrubError(new ScannerProtocolError('account act unknown'), r);
    assert.equal(error.message, `account ${REDACTED} unknown`);
    assert.equal(scrubError(error, r).message, `account ${REDACTED} unknown`);
  });
});

/** Every character as an HTML numeric reference: decimal, or hex in either case. */
const htmlNumeric = (s: string, hex: 'dec' | 'x' | 'X'): string =>
  Array.from(s).map((ch) => (hex === 'dec' ? `&#${ch.codePointAt(0)};` : `&#${hex}${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase()};`)).join('');
/** Every UTF-8 byte percent-encoded (RFC 3986 strict: unreserved characters and `!*'()` too). */
const percentEvery = (s: string, upper: boolean): string => [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0')[upper ? 'toUpperCase' : 'toLowerCase']()}`).join('');
/** Written here, not taken from src/: windows-1252 for the bytes 0x80-0x9f (Node's TextDecoder reads them as latin1). */
const CP1252_80_9F = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ';
const readAs = (s: string, charset: 'latin1' | 'windows-1252'): string =>
  [...Buffer.from(s)].map((b) => (charset === 'windows-1252' && b >= 0x80 && b < 0xa0 ? CP1252_80_9F[b - 0x80] : String.fromCharCode(b))).join('');

describe('the redactor: HTML references, strict percent-encoding, another charset, base64 in groups (issue 15)', () => {
  // `!*'()` are left alone by encodeURIComponent and encoded by strict (RFC 3986) encoders; `€` and `ő`
  // have UTF-8 bytes in 0x80-0x9f, where latin1 and windows-1252 read them differently.
  const user = 'ops.Scanner';
  const password = "it's(a)*Pass!€ő&<x>=\"/ü";
  const redact = createRedactor({ user, password });
  const basic = Buffer.from(`${user}:${password}`).toString('base64');
  const mimeWrap = (b64: string, width: number, eol: string): string => (b64.match(new RegExp(`.{1,${width}}`, 'g')) ?? []).join(eol);
  const blob = Buffer.from(`{"account":"${user}","password":"${password}","padding":"${'p'.repeat(80)}"}`).toString('base64');
  const spellings: Array<[string, string, string]> = [
    ['HTML decimal references, every character', htmlNumeric(password, 'dec'), password],
    ['HTML hex references, every character (&#x)', htmlNumeric(password, 'x'), password],
    ['HTML hex references, every character (&#X)', htmlNumeric(password, 'X'), password],
    ['HTML decimal references with leading zeros', Array.from(user).map((ch) => `&#00${ch.codePointAt(0)};`).join(''), user],
    ['an HTML escaper (named &amp; &lt; &gt; &quot;, numeric &#39;)', password.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;'), password],
    ['HTML 4 named references (&euro; &uuml; &lpar; &ast; &excl; &sol;)', password.replace(/&/g, '&amp;').replace(/€/g, '&euro;').replace(/ü/g, '&uuml;').replace(/\(/g, '&lpar;').replace(/\*/g, '&ast;').replace(/!/g, '&excl;').replace(/\//g, '&sol;'), password],
    ['percent-encoding of every byte, upper-case hex', percentEvery(password, true), password],
    ['percent-encoding of every byte, lower-case hex', percentEvery(password, false), password],
    ['percent-encoding of every byte of the user', percentEvery(user, true), user],
    ["RFC 3986 strict: encodeURIComponent plus !*'() encoded", encodeURIComponent(password).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`), password],
    ["form-encoded with !*'() encoded", new URLSearchParams({ p: password }).toString().slice(2).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16)}`), password],
    ['UTF-8 bytes read as latin1', readAs(password, 'latin1'), password],
    ['UTF-8 bytes read as windows-1252', readAs(password, 'windows-1252'), password],
    ['JSON with every non-ASCII character escaped (\\uXXXX, as Python writes it)', JSON.stringify(password).slice(1, -1).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`), password],
    ['JSON as Go writes it (<, >, & as \\u003c, \\u003e, \\u0026)', JSON.stringify(password).slice(1, -1).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`), password],
    ['Basic value with a space every 4 characters', mimeWrap(basic, 4, ' '), `${user}:${password}`],
    ['Basic value broken by a newline in the middle', `${basic.slice(0, 17)}\n${basic.slice(17)}`, `${user}:${password}`],
    ['base64url of user:password in groups of 8, tabs between', mimeWrap(Buffer.from(`${user}:${password}`).toString('base64url'), 8, '\t'), `${user}:${password}`],
  ];
  for (const [label, spelling, secret] of spellings) {
    it(`${label}: removed, the text around it kept`, () => {
      assert.notEqual(spelling, secret, 'the spelling differs from the raw secret');
      const out = redact(`before ${spelling} after`);
      assert.ok(out.startsWith('before ') && out.endsWith(' after'), out);
      assert.equal(out, `before ${REDACTED} after`);
    });
  }

  it('the Basic value of long credentials in MIME lines of 76 characters: removed', () => {
    const longUser = `${user}.${'team-'.repeat(24)}`;
    const longBasic = Buffer.from(`${longUser}:${password}`).toString('base64');
    assert.ok(longBasic.length > 2 * 76);
    assert.equal(createRedactor({ user: longUser, password })(`Authorization: Basic ${mimeWrap(longBasic, 76, '\r\n')}\r\n\r\n`), `Authorization: Basic ${REDACTED}\r\n\r\n`);
  });

  it('a JSON blob holding the password, base64 in MIME lines of 76 characters inside a longer text: nothing left decodes to a piece of it', () => {
    // Every 4 bytes of the password, looked for in what is left, decoded from each of the four offsets.
    const pieces = Array.from({ length: Buffer.from(password).length - 3 }, (_, i) => Buffer.from(password).subarray(i, i + 4));
    for (const eol of ['\r\n', '\n', ' ']) {
      const out = redact(`attachment:\n${mimeWrap(blob, 76, eol)}\n--end`);
      assert.ok(out.includes(REDACTED), JSON.stringify(out));
      for (const part of out.split(REDACTED)) {
        const b64 = part.replace(/^attachment:|--end$|\s/g, '');
        for (let offset = 0; offset < 4; offset += 1) {
          const bytes = Buffer.from(b64.slice(offset), 'base64');
          assert.ok(!pieces.some((piece) => bytes.includes(piece)), `${JSON.stringify(eol)}: ${JSON.stringify(part)} holds a piece of the password`);
        }
      }
    }
  });

  it('characters a charset could not hold, written as ? or U+FFFD: removed', () => {
    const lossy = Array.from(password).map((ch) => ((ch.codePointAt(0) ?? 0) > 0x7f ? '?' : ch)).join('');
    assert.equal(redact(`x ${lossy} y`), `x ${REDACTED} y`);
    const replaced = Array.from(password).map((ch) => ((ch.codePointAt(0) ?? 0) > 0x7f ? '\ufffd' : ch)).join('');
    assert.equal(redact(`x ${replaced} y`), `x ${REDACTED} y`);
  });

  it('a spelling mixing encodings character by character (HTML, percent, raw): removed', () => {
    const mixed = Array.from(password).map((ch, i) => [ch, percentEvery(ch, i % 2 === 0), htmlNumeric(ch, 'x')][i % 3]).join('');
    assert.equal(redact(`<p>${mixed}</p>`), `<p>${REDACTED}</p>`);
  });

  it('ordinary HTML, percent-encoded and non-ASCII text without the credentials is left as it is', () => {
    const text = 'unknown tag a&amp;b &#x41;&#66; %41%42%43 caf\u00c3\u00a9 Ã€ ? \ufffd c2VjcmV0 c2Vj cmV0 (HTTP 404)';
    assert.equal(redact(text), text);
  });

  it('a secret of one character is redacted in its encodings, and nothing matches an empty text', () => {
    const r = createRedactor({ user: 'é', password: '' });
    assert.equal(r('a &eacute; b %C3%A9 c Ã© d'), `a ${REDACTED} b ${REDACTED} c ${REDACTED} d`);
    assert.equal(r(''), '');
  });
});

describe('ANCHORE_CLI_URL: credentials in it are refused, never echoed', () => {
  for (const url of [`http://${USER}:${encodeURIComponent(PASS)}@anchore:8228/v1`, `https://${USER}@anchore/v2`, 'http://:hunter2hunter2@anchore/']) {
    it(url.replace(/\/\/.*@/, '//…@'), () => {
      assert.throws(
        () => parseConfig({ ANCHORE_CLI_URL: url }, { insecureHttp: true }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.deepEqual(error.problems, [URL_CREDENTIALS_PROBLEM]);
          assert.ok(!error.message.includes('anchore:') && !error.message.includes('@anchore'), error.message);
          return true;
        },
      );
    });
  }

  it('a user or password longer than MAX_SECRET_LENGTH is refused, and not repeated', () => {
    for (const env of [{ ANCHORE_CLI_USER: 'U'.repeat(MAX_SECRET_LENGTH + 1) }, { ANCHORE_CLI_PASS: 'P'.repeat(MAX_SECRET_LENGTH + 1) }]) {
      assert.throws(
        () => parseConfig(env, { insecureHttp: true }),
        (error: unknown) => error instanceof ConfigError && /must be at most 1024 characters/.test(error.message) && !/UUUU|PPPP/.test(error.message),
      );
    }
  });

  it('a URL without credentials is taken as it is', () => {
    assert.equal(parseConfig({ ANCHORE_CLI_URL: 'https://anchore.example:8228/v2' }, { insecureHttp: true }).scanner.url, 'https://anchore.example:8228/v2');
  });
});

describe('Basic auth over plain HTTP: warned at start-up unless the host is the loopback', () => {
  const table: Array<[string, boolean]> = [
    ['http://anchore.anchore.svc:8228/v1', true],
    ['http://10.0.0.7:8228', true],
    ['http://[fd00::7]:8228/v2', true],
    ['http://127.0.0.1.example.com/v1', true],
    ['http://localhost:8228/v1', false],
    ['http://scanner.localhost/v1', false],
    ['http://127.0.0.1:8228/v1', false],
    ['http://127.9.8.7/v1', false],
    ['http://[::1]:8228/v1', false],
    ['http://[::ffff:127.0.0.1]:8228/v1', false],
    ['https://anchore.example.com/v2', false],
  ];
  for (const [url, warns] of table) {
    it(`${url}: ${warns ? 'warns' : 'no warning'}`, () => {
      const warning = plainHttpAuthWarning(url);
      assert.equal(warning !== undefined, warns, String(warning));
      if (warning !== undefined) assert.match(warning, new RegExp(`over plain HTTP to ${new URL(url).host.replace(/[.[\]]/g, '\\$&')}: .*use an https:// ANCHORE_CLI_URL`));
    });
  }

  it('isLoopbackHost: not fooled by look-alikes', () => {
    for (const host of ['127.0.0.1.nip.io', 'localhost.example', '128.0.0.1', '::2', '1.127.0.0.1']) assert.equal(isLoopbackHost(host), false, host);
  });

  it('the composition root logs the warning once, as a warning; a loopback scanner gets none', () => {
    for (const [url, expected] of [
      ['http://anchore.invalid:8228/v1', 1],
      ['http://127.0.0.1:8228/v1', 0],
    ] as const) {
      const logs = new LogCapture();
      // v1: no version probe at start, so nothing is sent anywhere.
      const config = parseConfig({ ANCHORE_CLI_URL: url, ANCHORE_API_VERSION: 'v1', ANCHORE_CLI_PASS: PASS }, { insecureHttp: true });
      const scangate = composeScangate(config, { logger: pino({ level: 'info' }, logs) });
      scangate.scannerTransport.dispose();
      const lines = logs.lines.filter((l) => String(l['msg']).includes('over plain HTTP'));
      assert.equal(lines.length, expected, url);
      if (expected === 1) assert.equal(lines[0]?.['level'], 40);
      assert.ok(!logs.raw.join('\n').includes(PASS));
    }
  });
});

describe('"scanner rejected the credentials": logged again when refusals start again', () => {
  it('once per streak of refusals, again after a success, at most once per interval', async () => {
    let clock = 0;
    const logs = new LogCapture();
    const transport = createScannerTransport({
      requestTimeoutMs: 1000,
      retryInitialMs: 1,
      retryMaxMs: 1,
      retryBudgetMs: 0,
      breakerFailures: 0,
      probeIntervalMs: 1000,
      metrics: createMetrics(),
      logger: pino({ level: 'info' }, logs),
      now: () => clock,
      authLogIntervalMs: 60_000,
    });
    const signal = new AbortController().signal;
    const refused = (): Promise<unknown> =>
      transport.call('add_image', () => Promise.reject(new ScannerAuthError(401)), { signal }).catch((e: unknown) => e);
    const accepted = (): Promise<unknown> => transport.call('add_image', () => Promise.resolve('ok'), { signal });
    const logged = (): number => logs.find('scanner rejected the credentials: check ANCHORE_CLI_USER / ANCHORE_CLI_PASS').length;
    try {
      for (let i = 0; i < 5; i += 1) assert.ok((await refused()) instanceof ScannerAuthError);
      assert.equal(logged(), 1, 'one line for a streak of refusals');
      await accepted();
      clock += 10_000;
      await refused();
      assert.equal(logged(), 1, 'a new streak within the interval of the last line: not logged yet');
      clock += 60_000;
      await refused();
      assert.equal(logged(), 2, 'that streak, past the interval: logged now');
      clock += 120_000;
      await refused();
      assert.equal(logged(), 2, 'the same streak: not repeated, however long it lasts');
      await accepted();
      await refused();
      assert.equal(logged(), 3, 'refusals start again after a success, past the interval');
    } finally {
      transport.dispose();
    }
  });
});

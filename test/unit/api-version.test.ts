/**
 * Which Anchore API, and where: the ANCHORE_CLI_URL rule, the reading of `GET /v2/version`, the
 * ANCHORE_API_VERSION/URL consistency check, and the detector (single-flight probes, background
 * retries, re-detection after an outage).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { ScannerAuthError, ScannerUnavailableError } from '../../src/errors.js';
import { parseConfig } from '../../src/config.js';
import {
  createApiDetector,
  DOWNGRADE_AFTER,
  parseScannerUrl,
  readVersionAnswer,
  urlVersionProblem,
  type ApiVersion,
} from '../../src/scanner/api-version.js';

describe('ANCHORE_CLI_URL: with or without the /v1 or /v2 suffix', () => {
  const cases: Array<[url: string, v1: string, v2: string, suffix: ApiVersion | undefined]> = [
    ['http://anchore:8228', 'http://anchore:8228', 'http://anchore:8228/v2', undefined],
    ['http://anchore:8228/', 'http://anchore:8228', 'http://anchore:8228/v2', undefined],
    ['http://anchore:8228/v1', 'http://anchore:8228/v1', 'http://anchore:8228/v2', 'v1'],
    ['http://anchore:8228/v1/', 'http://anchore:8228/v1', 'http://anchore:8228/v2', 'v1'],
    ['http://anchore:8228/v2', 'http://anchore:8228/v1', 'http://anchore:8228/v2', 'v2'],
    ['https://anchore.example.com/anchore/v2//', 'https://anchore.example.com/anchore/v1', 'https://anchore.example.com/anchore/v2', 'v2'],
    // Sysdig Secure: `v1` is not the last segment, so the URL as given is the v1 base.
    ['https://secure.sysdig.com/api/scanning/v1/anchore', 'https://secure.sysdig.com/api/scanning/v1/anchore', 'https://secure.sysdig.com/api/scanning/v1/anchore/v2', undefined],
    ['https://secure.sysdig.com/api/scanning/v1/anchore/', 'https://secure.sysdig.com/api/scanning/v1/anchore', 'https://secure.sysdig.com/api/scanning/v1/anchore/v2', undefined],
    // Only an exact `v1`/`v2` segment is a suffix.
    ['http://anchore:8228/api/v10', 'http://anchore:8228/api/v10', 'http://anchore:8228/api/v10/v2', undefined],
    ['http://anchore:8228/xv2', 'http://anchore:8228/xv2', 'http://anchore:8228/xv2/v2', undefined],
    ['http://anchore:8228/V2', 'http://anchore:8228/V2', 'http://anchore:8228/V2/v2', undefined],
    // Query, fragment and userinfo are not part of an API base.
    ['http://u:p@anchore:8228/v1?x=1#y', 'http://anchore:8228/v1', 'http://anchore:8228/v2', 'v1'],
    ['http://[::1]:8228/v2', 'http://[::1]:8228/v1', 'http://[::1]:8228/v2', 'v2'],
  ];
  for (const [url, v1, v2, suffix] of cases) {
    it(url, () => {
      const e = parseScannerUrl(url);
      assert.equal(e.v1, v1);
      assert.equal(e.v2, v2);
      assert.equal(e.suffix, suffix);
      assert.equal(e.versionUrl, `${v2}/version`);
    });
  }

  it('ANCHORE_API_VERSION must agree with a suffix; auto and a bare URL never conflict', () => {
    assert.equal(urlVersionProblem('auto', 'http://a/v1'), undefined);
    assert.equal(urlVersionProblem('v1', 'http://a/v1'), undefined);
    assert.equal(urlVersionProblem('v2', 'http://a'), undefined);
    assert.equal(urlVersionProblem('v2', 'https://h/api/scanning/v1/anchore'), undefined);
    assert.match(urlVersionProblem('v2', 'http://a/v1') ?? '', /ANCHORE_API_VERSION=v2 contradicts ANCHORE_CLI_URL ending in \/v1/);
    assert.match(urlVersionProblem('v1', 'http://a/v2/') ?? '', /contradicts/);
  });

  it('config: ANCHORE_API_VERSION defaults to auto, is validated, and checked against the URL', () => {
    const base = { INSECURE_HTTP: 'true' };
    assert.equal(parseConfig(base).scanner.apiVersion, 'auto');
    assert.equal(parseConfig({ ...base, ANCHORE_API_VERSION: 'v2', ANCHORE_CLI_URL: 'http://a:8228' }).scanner.apiVersion, 'v2');
    assert.throws(() => parseConfig({ ...base, ANCHORE_API_VERSION: '2' }), /ANCHORE_API_VERSION: expected auto, v1 or v2/);
    assert.throws(() => parseConfig({ ...base, ANCHORE_API_VERSION: 'v2', ANCHORE_CLI_URL: 'http://a:8228/v1' }), /contradicts/);
  });
});

describe('GET /v2/version answers', () => {
  const cases: Array<[name: string, status: number, body: unknown, expected: ApiVersion | RegExp]> = [
    ['Enterprise 5: api.version "2"', 200, { service: { version: '5.21.0' }, api: { version: '2' }, db: { schema_version: '5.21.0' } }, 'v2'],
    ['a semantic version 2.13.0', 200, { api: { version: '2.13.0' } }, 'v2'],
    ['Anchore Engine: an empty api', 200, { service: { version: '1.1.0' }, api: {}, db: {} }, 'v1'],
    ['api.version "1"', 200, { api: { version: '1' } }, 'v1'],
    ['api.version "20"', 200, { api: { version: '20' } }, 'v1'],
    ['api.version as a number', 200, { api: { version: 2 } }, 'v1'],
    ['a JSON string', 200, 'v2', 'v1'],
    ['HTML from a proxy', 200, '<html>', 'v1'],
    ['404 from a v1-only server or Sysdig', 404, { message: 'not found' }, 'v1'],
    ['405', 405, '', 'v1'],
    ['401 is a credentials problem', 401, {}, /rejected the credentials/],
    ['403 too', 403, {}, /rejected the credentials/],
    ['503 is transient', 503, {}, /HTTP 503/],
    ['429 is transient', 429, {}, /HTTP 429/],
  ];
  for (const [name, status, body, expected] of cases) {
    it(name, () => {
      if (expected instanceof RegExp) assert.throws(() => readVersionAnswer(status, body), expected);
      else assert.equal(readVersionAnswer(status, body), expected);
    });
  }
  it('a transient failure is retryable, a credentials failure is not', () => {
    assert.throws(() => readVersionAnswer(500, {}), (e: unknown) => e instanceof ScannerUnavailableError && e.retryable);
    assert.throws(() => readVersionAnswer(401, {}), (e: unknown) => e instanceof ScannerAuthError && !e.retryable);
  });
});

describe('API detector', () => {
  const logger = pino({ level: 'silent' });
  const signal = new AbortController().signal;

  it('v1 and v2 are fixed: never asked', async () => {
    let probes = 0;
    for (const setting of ['v1', 'v2'] as const) {
      const d = createApiDetector({ setting, probe: () => ((probes += 1), Promise.resolve('v1')), logger, retryInitialMs: 10, retryMaxMs: 10 });
      assert.equal(d.current, setting);
      assert.equal(await d.resolve(signal), setting);
      d.redetect();
      assert.equal(await d.resolve(signal), setting);
    }
    assert.equal(probes, 0);
  });

  it('auto asks once at creation; concurrent scans share the probe', async () => {
    let probes = 0;
    const d = createApiDetector({
      setting: 'auto',
      probe: async () => {
        probes += 1;
        await sleep(20);
        return 'v2';
      },
      logger,
      retryInitialMs: 10,
      retryMaxMs: 10,
    });
    assert.equal(d.current, undefined);
    const answers = await Promise.all(Array.from({ length: 20 }, () => d.resolve(signal)));
    assert.deepEqual(new Set(answers), new Set(['v2']));
    assert.equal(probes, 1);
    assert.equal(d.current, 'v2');
    d.close();
  });

  it('a failed probe: scans get its error, the background retry finds the API, and then scans work', async () => {
    let failing = true;
    let probes = 0;
    const d = createApiDetector({
      setting: 'auto',
      probe: () => {
        probes += 1;
        return failing ? Promise.reject(new ScannerUnavailableError('scanner unreachable (ECONNREFUSED)')) : Promise.resolve('v1');
      },
      logger,
      retryInitialMs: 30,
      retryMaxMs: 30,
    });
    await assert.rejects(d.resolve(signal), /ECONNREFUSED/);
    failing = false;
    await sleep(120);
    assert.equal(d.current, 'v1', 'found by the background retry, without any scan asking');
    const before = probes;
    assert.equal(await d.resolve(signal), 'v1');
    assert.equal(probes, before, 'a known version is not asked again');
    d.close();
  });

  it('re-detection after an outage: a new answer replaces the old one; a failed one keeps it', async () => {
    let answer: ApiVersion | Error = 'v1';
    const d = createApiDetector({
      setting: 'auto',
      probe: () => (answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer)),
      logger,
      retryInitialMs: 1000,
      retryMaxMs: 1000,
    });
    assert.equal(await d.resolve(signal), 'v1');
    answer = 'v2';
    d.redetect();
    assert.equal(await d.resolve(signal), 'v2', 'a scan during the re-detection waits for its answer');
    answer = new ScannerUnavailableError('down');
    d.redetect();
    assert.equal(await d.resolve(signal), 'v2');
    d.close();
  });

  it('a known v2 is not downgraded by one odd answer (a 404 during a redeploy): only by DOWNGRADE_AFTER in a row', async () => {
    let answer: ApiVersion = 'v2';
    const d = createApiDetector({ setting: 'auto', probe: () => Promise.resolve(answer), logger, retryInitialMs: 60_000, retryMaxMs: 60_000 });
    assert.equal(await d.resolve(signal), 'v2');
    answer = 'v1';
    d.redetect();
    assert.equal(await d.resolve(signal), 'v2', 'one v1 answer keeps v2');
    for (let i = 2; i < DOWNGRADE_AFTER; i++) {
      d.redetect();
      assert.equal(await d.resolve(signal), 'v2', `${String(i)} v1 answers keep v2`);
    }
    answer = 'v2';
    d.redetect();
    assert.equal(await d.resolve(signal), 'v2');
    answer = 'v1';
    for (let i = 1; i < DOWNGRADE_AFTER; i++) {
      d.redetect();
      assert.equal(await d.resolve(signal), 'v2', 'a v2 answer in between starts the count again');
    }
    d.redetect();
    assert.equal(await d.resolve(signal), 'v1', `${String(DOWNGRADE_AFTER)} in a row: the server is v1 now`);
    d.close();
  });

  it("a scan's own signal ends its wait for a probe", async () => {
    const d = createApiDetector({ setting: 'auto', probe: () => new Promise<ApiVersion>(() => undefined), logger, retryInitialMs: 10, retryMaxMs: 10 });
    const controller = new AbortController();
    const waiting = d.resolve(controller.signal);
    controller.abort(new Error('scan bound'));
    await assert.rejects(waiting, /scan bound/);
    d.close();
  });
});

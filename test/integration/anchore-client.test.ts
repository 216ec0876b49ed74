/**
 * The Anchore client against a scanner that repeats the credentials in its own error texts (Anchore's
 * "no active policy to evaluate: <user>"; on Sysdig Secure the user is the API token): the typed error
 * carries the scanner's reason with the credentials blanked out. Real socket on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { ScannerRateLimitedError, ScannerRequestError, ScannerUnavailableError } from '../../src/errors.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { parseImageReference } from '../../src/reference/parse-reference.js';
import { createAnchoreClient } from '../../src/scanner/anchore-client.js';

const USER = 'sysdig-token-3f9a1c';
const PASS = 'Pw-8d2e7b41c0';

let server: http.Server;
let baseUrl: string;
/** When set, every call is answered with this status and `Retry-After: 1` instead of the echo below. */
let refuseWith: number | undefined;

before(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (refuseWith !== undefined) {
        res.writeHead(refuseWith, { 'content-type': 'application/json', 'retry-after': '1' }).end(JSON.stringify({ message: 'busy', httpcode: refuseWith, detail: {} }));
        return;
      }
      // Echoes both credentials in an Anchore-shaped error body.
      const body = JSON.stringify({ message: `tag refused for account ${USER} (auth ${USER}:${PASS})`, httpcode: 400, detail: {} });
      res.writeHead(400, { 'content-type': 'application/json' }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}/v1`;
});
after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function scanOnce(retryBudgetMs: number): Promise<unknown> {
  const client = createAnchoreClient({
    baseUrl,
    user: USER,
    password: PASS,
    insecureSkipTlsVerify: false,
    requestTimeoutMs: 2000,
    pollInitialMs: 10,
    retryBackoffMs: 10,
    pollMaxMs: 20,
    retryBudgetMs,
    metrics: createMetrics(),
    logger: pino({ level: 'silent' }),
  });
  const parsed = parseImageReference('nginx:1.25.3');
  assert.ok(parsed.valid);
  return client.scan(parsed.reference, { signal: new AbortController().signal, onCallResult: () => undefined }).then(
    () => assert.fail('the scan must reject'),
    (e: unknown) => e,
  );
}

describe('anchore client: scanner texts', () => {
  it('a refusal keeps the scanner reason but never the credentials', async () => {
    const error = await scanOnce(100);
    assert.ok(error instanceof ScannerRequestError, String(error));
    assert.equal(error.status, 400);
    assert.equal(error.message, 'scanner refused add_image (HTTP 400: tag refused for account [redacted] (auth [redacted]))');
  });
});

describe('anchore client: Retry-After', () => {
  // The transport waits what the error says (test/unit/retry-after.test.ts, on mock timers); here the
  // header becomes that delay. No retry budget: the first refusal is the scan's answer.
  for (const [status, type] of [
    [429, ScannerRateLimitedError],
    [503, ScannerUnavailableError],
  ] as const) {
    it(`a ${String(status)} with Retry-After: 1 carries a delay of 1000 ms to the transport`, async () => {
      refuseWith = status;
      try {
        const error = await scanOnce(0);
        assert.ok(error instanceof type, String(error));
        assert.equal(error.retryAfterMs, 1000);
      } finally {
        refuseWith = undefined;
      }
    });
  }
});

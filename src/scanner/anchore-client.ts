import http from 'node:http';
import https from 'node:https';
import axios, { type AxiosInstance, isAxiosError, isCancel } from 'axios';
import type { Logger } from 'pino';
import {
  ScanAbortedError,
  ScannerAuthError,
  ScannerError,
  ScannerProtocolError,
  ScannerRateLimitedError,
  ScannerRequestError,
  ScannerRequestTimeoutError,
  ScannerUnavailableError,
} from '../errors.js';
import type { Scanner } from '../engine/scan-coordinator.js';
import type { Metrics, ScannerCallOutcome, ScannerOperation } from '../observability/metrics.js';
import type { ScanVerdict } from '../policy/types.js';
import type { ImageReference } from '../reference/parse-reference.js';
import { pinDigestOf } from './anchore-wire.js';
import { createRedactor, scrubError } from './credentials.js';
import { createApiDetector, parseScannerUrl, readVersionAnswer, type ApiVersionSetting } from './api-version.js';
import { clockWith, delay, type Clock } from './clock.js';
import { createScannerTransport, type ScannerTransport } from './resilience.js';
import { createWireProtocol, type WireRequest } from './wire-protocol.js';

export interface AnchoreClientOptions {
  /** ANCHORE_CLI_URL, with or without a `/v1` or `/v2` suffix (read by parseScannerUrl, api-version.ts). */
  readonly baseUrl: string;
  /** ANCHORE_API_VERSION: 'auto' (default) asks the server's `GET /v2/version`; 'v1' / 'v2' never ask. */
  readonly apiVersion?: ApiVersionSetting;
  readonly user: string;
  readonly password: string;
  readonly policyId?: string;
  /** Optional `x-anchore-account` header (admin only). */
  readonly account?: string;
  /** PEM of a private CA that signs the scanner's certificate. */
  readonly caPem?: string;
  readonly insecureSkipTlsVerify: boolean;
  readonly requestTimeoutMs: number;
  readonly pollInitialMs: number;
  readonly pollMaxMs: number;
  /** How long one scan keeps retrying transient errors (5xx, 429, connection) before giving up. */
  readonly retryBudgetMs: number;
  /** SCANNER_RETRY_BACKOFF_MS: the first retry delay (doubles up to pollMaxMs); not the poll interval. */
  readonly retryBackoffMs: number;
  /** Consecutive scanner failures that open the circuit breaker; 0 or absent: no breaker. */
  readonly breakerFailures?: number;
  readonly breakerProbeIntervalMs?: number;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Time and timers of the transport and the polling (tests drive a manual clock). */
  readonly clock?: Clock;
  /** Only "now" replaced (older tests); ignored with `clock`. */
  readonly now?: () => number;
}

/** The scanner client: scans, the transport in front of the scanner (observe its breaker), and close(). */
export interface AnchoreClient extends Scanner {
  readonly transport: ScannerTransport;
  /** Stops the version detection and the breaker's timers and destroys the keep-alive sockets. */
  close(): void;
}

const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
const MAX_RETRY_AFTER_MS = 30_000;

function parseRetryAfter(value: unknown): number | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS) : undefined;
}

function outcomeOf(error: unknown): ScannerCallOutcome {
  if (error instanceof ScannerAuthError) return 'auth_error';
  if (error instanceof ScannerRateLimitedError) return 'rate_limited';
  if (error instanceof ScannerRequestTimeoutError) return 'timeout';
  if (error instanceof ScannerUnavailableError) return error.status === undefined ? 'network_error' : 'server_error';
  if (error instanceof ScannerProtocolError) return 'protocol_error';
  return 'client_error';
}

/** The tag sent with a reference; a digest-only reference gets a synthetic one for its repository. */
export function submissionTag(reference: ImageReference): string {
  if (reference.tag !== undefined) return `${reference.name}:${reference.tag}`;
  if (reference.digest !== undefined) {
    // The v1 API requires a tag. `latest` would re-point the scanner's latest tag at this digest, so
    // use a tag that names the digest instead.
    return `${reference.name}:${reference.digest.replace(':', '-').slice(0, 19)}`;
  }
  return `${reference.name}:latest`;
}

/** 4xx answers of the version endpoint that are a definite "not v2" (401/403/408/429 are not). */
const VERSION_ANSWERS = Array.from({ length: 100 }, (_, i) => 400 + i).filter((s) => ![401, 403, 408, 429].includes(s));

/**
 * Anchore client for both APIs: Enterprise v2, and v1 (Anchore Engine, Enterprise <= 4.9, Sysdig
 * Secure's Anchore API). Which one is spoken is decided by ANCHORE_API_VERSION and, in auto mode, by
 * the server's `GET /v2/version` (api-version.ts); the scan flow below is the same for both
 * (wire-protocol.ts). Every call goes through the transport (per-call timeout, retry with backoff
 * inside the scan's bound, circuit breaker: resilience.ts); axios errors are mapped to scangate's
 * typed errors here and nowhere else.
 */
export function createAnchoreClient(opts: AnchoreClientOptions): AnchoreClient {
  const clock = opts.clock ?? clockWith(opts.now);
  const endpoint = parseScannerUrl(opts.baseUrl);
  // The one transport of this scanner, whatever API the client speaks (one breaker per scanner).
  const transport = createScannerTransport({
    requestTimeoutMs: opts.requestTimeoutMs,
    retryInitialMs: opts.retryBackoffMs,
    retryMaxMs: opts.pollMaxMs,
    retryBudgetMs: opts.retryBudgetMs,
    breakerFailures: opts.breakerFailures ?? 0,
    probeIntervalMs: opts.breakerProbeIntervalMs ?? 5000,
    metrics: opts.metrics,
    logger: opts.logger,
    clock,
  });
  const agentOptions = { keepAlive: true, maxSockets: 64 };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent({
    ...agentOptions,
    rejectUnauthorized: !opts.insecureSkipTlsVerify,
    ...(opts.caPem !== undefined ? { ca: opts.caPem } : {}),
  });
  // Requests carry absolute URLs (wire-protocol.ts): the v1 and v2 bases differ.
  const client: AxiosInstance = axios.create({
    auth: { username: opts.user, password: opts.password },
    // The per-call timeout is the transport's (it aborts the call's signal).
    maxRedirects: 0,
    maxContentLength: MAX_RESPONSE_BYTES,
    responseType: 'text',
    // Keep the raw text: a malformed body must be a protocol error, not axios' silent fallback.
    transformResponse: [(data: unknown) => data],
    validateStatus: () => true,
    headers: { Accept: 'application/json', ...(opts.account !== undefined ? { 'x-anchore-account': opts.account } : {}) },
    httpAgent,
    httpsAgent,
  });
  // Set when a call failed because the scanner was unavailable. The next scan then asks for the API
  // again before using it (auto mode): a scanner that comes back from an outage may speak another API
  // (an upgrade from Engine to Enterprise 5 is such an outage). A 404 on POST /images, which every
  // API serves, asks again too.
  let outage = false;
  // The scanner's own texts may name the account (Anchore's "no active policy to evaluate: <user>"; on
  // Sysdig Secure the user is the API token), and a proxy may echo the Authorization header: no text,
  // error or verdict leaves this module with a credential in it, in any spelling (credentials.ts).
  const redact = createRedactor({ user: opts.user, password: opts.password });
  // `message` in both APIs' error bodies; redacted before it is cut.
  const scannerText = (body: unknown): string => redact(createWireProtocol('v1', endpoint).errorMessage(body)).slice(0, 160);
  const redactVerdict = (verdict: ScanVerdict): ScanVerdict => {
    const policyId = verdict.policyId !== undefined ? { policyId: redact(verdict.policyId) } : {};
    if (verdict.status === 'pass') return { ...verdict, ...policyId };
    const reasons = verdict.reasons.map((r) => ({ ...r, gate: redact(r.gate), trigger: redact(r.trigger), output: redact(r.output) }));
    return { ...verdict, ...policyId, reasons };
  };

  /** One HTTP call. Returns the status and parsed body for 2xx and for the statuses in `accept`. */
  async function call(
    operation: ScannerOperation,
    request: WireRequest,
    signal: AbortSignal,
    accept: readonly number[] = [],
  ): Promise<{ status: number; body: unknown }> {
    let outcome: ScannerCallOutcome | undefined = 'ok';
    try {
      let response;
      try {
        response = await client.request<string>({ ...request, signal });
      } catch (error) {
        if (isCancel(error) || signal.aborted) {
          throw signal.reason instanceof ScannerError ? signal.reason : new ScanAbortedError('scan aborted', { cause: error });
        }
        if (isAxiosError(error)) {
          if (error.code === 'ECONNABORTED' || error.code === 'ETIMEDOUT') {
            throw new ScannerRequestTimeoutError(`scanner did not answer ${operation} within ${opts.requestTimeoutMs} ms`);
          }
          if (error.code === 'ERR_BAD_RESPONSE' || error.code === 'ERR_FR_MAX_BODY_LENGTH_EXCEEDED') {
            // An answer too large is about one image (its vulnerability list); a broken one is the scanner's.
            throw new ScannerProtocolError(`scanner answer to ${operation} is unusable (${error.code})`, { unparseable: error.code === 'ERR_BAD_RESPONSE' });
          }
          throw new ScannerUnavailableError(`scanner unreachable (${error.code ?? 'network error'})`);
        }
        throw new ScannerUnavailableError('scanner unreachable');
      }
      const { status } = response;
      if (operation === 'add_image' && status === 404) detector.redetect();
      let body: unknown = response.data;
      if (typeof body === 'string' && body.length > 0) {
        try {
          body = JSON.parse(body) as unknown;
        } catch (error) {
          if (status >= 200 && status < 300) {
            throw new ScannerProtocolError(`scanner answered ${operation} with malformed JSON`, { cause: error, unparseable: true });
          }
        }
      }
      if (status >= 200 && status < 300) return { status, body };
      if (accept.includes(status)) {
        outcome = status === 404 && operation !== 'version' ? 'not_analyzed' : 'client_error';
        return { status, body };
      }
      // Logged by the transport (when refusals start, rate-limited).
      if (status === 401 || status === 403) throw new ScannerAuthError(status);
      const retryAfterMs = parseRetryAfter(response.headers['retry-after']);
      if (status === 429) throw new ScannerRateLimitedError(`scanner rate-limited ${operation} (HTTP 429)`, retryAfterMs);
      if (status >= 500) {
        throw new ScannerUnavailableError(`scanner failed ${operation} (HTTP ${status})`, {
          status,
          ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
        });
      }
      const detail = scannerText(body);
      throw new ScannerRequestError(`scanner refused ${operation} (HTTP ${status}${detail ? `: ${detail}` : ''})`, status);
    } catch (error) {
      // A call cut short by the scan's own bound or by shutdown is not the scanner's outcome.
      outcome = error instanceof ScanAbortedError ? undefined : outcomeOf(error);
      if (operation !== 'version' && (error instanceof ScannerUnavailableError || error instanceof ScannerRequestTimeoutError)) outage = true;
      // Scrubbed here, before the transport and the detector log it.
      throw scrubError(error, redact);
    } finally {
      if (outcome !== undefined) opts.metrics.scannerCalls.inc({ operation, outcome });
    }
  }

  /** One logical call through the transport: retried within the budget, behind the breaker. */
  const retried = <T>(
    operation: ScannerOperation,
    fn: (callSignal: AbortSignal) => Promise<T>,
    signal: AbortSignal,
    onCallResult: (error: ScannerError | undefined) => void,
  ): Promise<T> => transport.call(operation, fn, { signal, onCallResult });

  const protocols = { v1: createWireProtocol('v1', endpoint), v2: createWireProtocol('v2', endpoint) };
  const detector = createApiDetector({
    setting: opts.apiVersion ?? 'auto',
    probe: async (signal) => {
      const answer = await transport.once('version', (s) => call('version', { method: 'GET', url: endpoint.versionUrl }, s, VERSION_ANSWERS), signal);
      // Its errors are scangate's own texts (a status), never the scanner's.
      return readVersionAnswer(answer.status, answer.body);
    },
    logger: opts.logger,
    retryInitialMs: Math.max(opts.pollInitialMs, 500),
    retryMaxMs: Math.max(opts.pollMaxMs, 30_000),
  });
  // The breaker's probe (resilience.ts): a cheap call to the API itself, so that a server that still
  // answers 404 for an unknown path while its API hangs does not count as back. v1: GET /status; v2,
  // or the API not known yet: GET /v2/version. Any answer, even a 401, means the scanner is back.
  const PROBE_ANSWERS = [401, 403, ...VERSION_ANSWERS];
  transport.setProbe(() =>
    detector.current === 'v1'
      ? { operation: 'status', run: (signal) => call('status', { method: 'GET', url: `${endpoint.v1}/status` }, signal, PROBE_ANSWERS) }
      : { operation: 'version', run: (signal) => call('version', { method: 'GET', url: endpoint.versionUrl }, signal, PROBE_ANSWERS) },
  );

  async function runScan(reference: ImageReference, signal: AbortSignal, onCallResult: (error: ScannerError | undefined) => void): Promise<ScanVerdict> {
    const tag = submissionTag(reference);
    if (outage) {
      outage = false;
      detector.redetect();
    }
    // Auto mode: the API found at start, or wait for (and retry) the detection within the budget.
    // The version known already is no answer of the scanner: it must not reset the breaker's count.
    const wire = protocols[await transport.call('version', (s) => detector.resolve(s), { signal, onCallResult, successIsAnswer: false })];
    const submitted = await retried('add_image', (s) => call('add_image', wire.addImage(reference, tag), s), signal, onCallResult);
    let record = wire.parseImage(submitted.body, tag, reference.digest);
    const digest = record.imageDigest;
    const submittedAt = clock.now();
    const poll = async (): Promise<void> => {
      // The poll interval grows with the time already spent (250 ms + 10 %, capped at 2 s), so an
      // analysis of T seconds is seen at most ~10 % of T + 250 ms late; a ×1.5 backoff could add
      // up to a whole capped interval (bench/ "time to verdict").
      const elapsedMs = clock.now() - submittedAt;
      await delay(clock, Math.min(opts.pollInitialMs + Math.round(elapsedMs / 10), opts.pollMaxMs), signal);
      const got = await retried('get_image', (s) => call('get_image', wire.getImage(digest), s), signal, onCallResult);
      record = wire.parseImage(got.body, tag, digest);
    };
    for (;;) {
      const pinDigest = pinDigestOf(record);
      const pin = pinDigest !== undefined ? { pinDigest } : {};
      if (record.analysisStatus === 'analysis_failed') {
        return { status: 'fail', digest, ...pin, reasons: [], cause: 'analysis_failed' };
      }
      if (record.analysisStatus !== 'analyzed') {
        await poll();
        continue;
      }
      const checked = await retried('check', (s) => call('check', wire.check(digest, tag, opts.policyId), s, [404]), signal, onCallResult);
      if (checked.status === 404) {
        const message = scannerText(checked.body);
        // Analysis finished between our poll and the check, or the record went back to analysing.
        if (/not analyzed|analysis_status/i.test(message)) {
          record = { ...record, analysisStatus: 'analyzing' };
          continue;
        }
        if (/no active policy/i.test(message)) {
          throw new ScannerRequestError('scanner has no active policy bundle for this account: activate one or set ANCHORE_POLICY_ID', 404);
        }
        throw new ScannerRequestError(`scanner cannot evaluate the image (HTTP 404${message ? `: ${message}` : ''})`, 404);
      }
      const evaluation = wire.parseCheck(checked.body, digest, tag);
      const policyId = evaluation.policyId ?? opts.policyId;
      if (evaluation.status === 'pass') {
        return { status: 'pass', digest, ...pin, warnings: evaluation.warnCount, ...(policyId !== undefined ? { policyId } : {}) };
      }
      const reasons =
        evaluation.stopReasons.length > 0
          ? evaluation.stopReasons
          : [{ gate: 'policy', trigger: evaluation.finalActionReason ?? 'final_action', output: 'the policy evaluation ended in stop' }];
      return { status: 'fail', digest, ...pin, reasons, cause: 'policy', ...(policyId !== undefined ? { policyId } : {}) };
    }
  }

  return {
    transport,
    close() {
      detector.close();
      transport.dispose();
      httpAgent.destroy();
      httpsAgent.destroy();
    },
    async scan(reference, { signal, onCallResult }): Promise<ScanVerdict> {
      try {
        return redactVerdict(await runScan(reference, signal, onCallResult));
      } catch (error) {
        // Wire errors quote the scanner's answer (a status, a tag); breaker errors quote the last outage.
        throw scrubError(error, redact);
      }
    },
  };
}

/**
 * Which Anchore API to speak, and where: how ANCHORE_CLI_URL is read, how a `GET /v2/version`
 * answer is understood, and the detector that asks the server (ANCHORE_API_VERSION=auto) at start
 * and again when told the scanner came back from an outage.
 *
 * The URL rule (README "Which Anchore API"): trailing slashes are ignored; a last path segment `v1`
 * or `v2` is a version suffix and is taken off to give the root. The v2 API is at `<root>/v2`. The v1
 * API is at `<root>/v1` when the URL had a suffix, otherwise at the URL as given (anchore-cli's
 * convention, and Sysdig Secure's `https://HOST/api/scanning/v1/anchore`, whose `v1` is not last).
 */
import type { Logger } from 'pino';
import { ScannerAuthError, ScannerError, ScannerProtocolError, ScannerUnavailableError, describeError } from '../errors.js';

export type ApiVersion = 'v1' | 'v2';
export type ApiVersionSetting = 'auto' | ApiVersion;
export const API_VERSION_SETTINGS: readonly ApiVersionSetting[] = ['auto', 'v1', 'v2'];

export interface ScannerEndpoint {
  /** The URL without trailing slashes and without a `/v1` or `/v2` suffix. */
  readonly root: string;
  /** The version suffix the URL carried, if any. */
  readonly suffix: ApiVersion | undefined;
  /** Base URL of each API (request paths such as `/images` are appended). */
  readonly v1: string;
  readonly v2: string;
  /** Where auto mode asks: `<root>/v2/version`. */
  readonly versionUrl: string;
}

/** Reads ANCHORE_CLI_URL (already validated as an http(s) URL) by the rule in the module comment. */
export function parseScannerUrl(url: string): ScannerEndpoint {
  const parsed = new URL(url);
  // Query and fragment have no meaning for an API base; credentials are handled by the client.
  const path = parsed.pathname.replace(/\/+$/, '');
  const match = /^(.*)\/(v1|v2)$/.exec(path);
  const suffix = match === null ? undefined : (match[2] as ApiVersion);
  const rootPath = match === null ? path : (match[1] ?? '');
  const origin = `${parsed.protocol}//${parsed.host}`;
  const root = `${origin}${rootPath}`;
  return {
    root,
    suffix,
    v1: suffix === undefined ? root : `${root}/v1`,
    v2: `${root}/v2`,
    versionUrl: `${root}/v2/version`,
  };
}

/** A configuration problem (one line) when ANCHORE_API_VERSION and the URL's suffix disagree. */
export function urlVersionProblem(setting: ApiVersionSetting, url: string): string | undefined {
  let suffix: ApiVersion | undefined;
  try {
    suffix = parseScannerUrl(url).suffix;
  } catch {
    return undefined;
  }
  if (setting === 'auto' || suffix === undefined || suffix === setting) return undefined;
  return `ANCHORE_API_VERSION=${setting} contradicts ANCHORE_CLI_URL ending in /${suffix}: drop the suffix or pick the matching version`;
}

/**
 * Reads an answer to `GET <root>/v2/version`: 'v2' when it is a `ServiceVersion` whose `api.version`
 * is "2" (or "2.x": the schema calls it a semantic version), 'v1' for any other definite answer
 * (404 from a v1-only server or from Sysdig Secure, Anchore Engine's `"api": {}`, HTML from a proxy).
 * 401/403 are a credentials problem and 408, 429 and 5xx are transient: those throw, and the
 * detector asks again later rather than settle on v1 because of a passing fault.
 */
export function readVersionAnswer(status: number, body: unknown): ApiVersion {
  if (status === 401 || status === 403) throw new ScannerAuthError(status);
  if (status === 408 || status === 429 || status >= 500) {
    throw new ScannerUnavailableError(`scanner failed version (HTTP ${String(status)})`, { status });
  }
  if (status < 200 || status >= 300) return 'v1';
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'v1';
  const api = (body as Record<string, unknown>)['api'];
  if (typeof api !== 'object' || api === null) return 'v1';
  const version = (api as Record<string, unknown>)['version'];
  return typeof version === 'string' && /^2(\.|$)/.test(version.trim()) ? 'v2' : 'v1';
}

/** v1 answers in a row that move a known v2 back to v1. */
export const DOWNGRADE_AFTER = 3;

export interface ApiDetectorOptions {
  readonly setting: ApiVersionSetting;
  /** Asks the server once: resolves with the API, rejects with a ScannerError. */
  readonly probe: (signal: AbortSignal) => Promise<ApiVersion>;
  readonly logger: Logger;
  /** Background retries after a failed probe back off from this... */
  readonly retryInitialMs: number;
  /** ...to this. */
  readonly retryMaxMs: number;
}

export interface ApiDetector {
  /** The API version known now, if any. */
  readonly current: ApiVersion | undefined;
  /**
   * The API to speak. Waits for a probe in flight (bounded by `signal`); when the last probe failed
   * it asks again at once and rejects with that probe's ScannerError if it fails too (a retryable
   * one for a scanner that is down, so the caller's retry budget applies).
   */
  resolve(signal: AbortSignal): Promise<ApiVersion>;
  /** The scanner came back from an outage: ask again (auto mode; no-op otherwise). */
  redetect(): void;
  /** Stops background retries. */
  close(): void;
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/**
 * ANCHORE_API_VERSION=v1|v2: fixed, never asks. auto: asks at creation, without blocking anyone;
 * a failed probe is retried in the background with backoff until one answers, and every scan in the
 * meantime waits for (or triggers) a probe, so scans fail as scanner errors while the API is unknown
 * and work as soon as it is known. Probes are single-flight. A re-detection keeps the known version
 * until the new answer arrives, and a failed re-detection keeps it.
 */
export function createApiDetector(opts: ApiDetectorOptions): ApiDetector {
  if (opts.setting !== 'auto') {
    const fixed = opts.setting;
    return {
      current: fixed,
      resolve: () => Promise.resolve(fixed),
      redetect: () => undefined,
      close: () => undefined,
    };
  }
  let known: ApiVersion | undefined;
  let inFlight: Promise<ApiVersion> | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let retryDelayMs = opts.retryInitialMs;
  let closed = false;
  let failures = 0;
  // Answers of v1 in a row since v2 was known (docs/THREAT-MODEL.md, I5).
  let downgradeAnswers = 0;
  const controller = new AbortController();

  const scheduleRetry = (): void => {
    if (closed || retryTimer !== undefined) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      probe().catch(() => undefined);
    }, retryDelayMs);
    retryTimer.unref();
    retryDelayMs = Math.min(retryDelayMs * 2, opts.retryMaxMs);
  };

  const probe = (): Promise<ApiVersion> => {
    inFlight ??= opts
      .probe(controller.signal)
      .then(
        (version) => {
          // v2 is a definite answer (a ServiceVersion saying 2); v1 is "anything else", which one proxy
          // error page or a 404 during a redeploy also gives. Once v2 is known, only DOWNGRADE_AFTER v1
          // answers in a row (asked again in the background) move it back.
          if (known === 'v2' && version === 'v1' && ++downgradeAnswers < DOWNGRADE_AFTER) {
            if (downgradeAnswers === 1) opts.logger.warn({ apiVersion: 'v1', known }, 'scanner answered as v1 once; keeping v2 until it says so again');
            scheduleRetry();
            return known;
          }
          downgradeAnswers = 0;
          if (known !== version) {
            const level = known === undefined ? 'info' : 'warn';
            opts.logger[level]({ apiVersion: version, previous: known ?? null }, known === undefined ? 'scanner API detected' : 'scanner API version changed');
          }
          known = version;
          failures = 0;
          retryDelayMs = opts.retryInitialMs;
          return version;
        },
        (error: unknown) => {
          const scannerError = error instanceof ScannerError ? error : new ScannerProtocolError(describeError(error).message, { cause: error });
          failures += 1;
          // One line per failure streak, then one every 10 failures: a down scanner must not flood the log.
          if (failures === 1 || failures % 10 === 0) {
            opts.logger.warn(
              { err: describeError(scannerError), failures, known: known ?? null },
              known === undefined
                ? 'scanner API version unknown: GET /v2/version failed; scans fail as scanner errors until it answers'
                : 'scanner API re-detection failed; keeping the known version',
            );
          }
          scheduleRetry();
          throw scannerError;
        },
      )
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  };

  probe().catch(() => undefined);

  return {
    get current() {
      return known;
    },
    async resolve(signal) {
      if (inFlight === undefined && known !== undefined) return known;
      try {
        return await abortable(inFlight ?? probe(), signal);
      } catch (error) {
        // A failed re-detection keeps the version that worked.
        if (known !== undefined && !signal.aborted) return known;
        throw error;
      }
    },
    redetect() {
      if (closed) return;
      if (retryTimer !== undefined) {
        clearTimeout(retryTimer);
        retryTimer = undefined;
      }
      probe().catch(() => undefined);
    },
    close() {
      closed = true;
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      retryTimer = undefined;
      controller.abort(new Error('scanner client closed'));
    },
  };
}

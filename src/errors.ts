/**
 * scangate's error catalogue. A denial is data (see policy/decision.ts); these classes are for things
 * that broke. Every class has a stable `code` (like undici's UND_ERR_* and fastify's FST_ERR_*) and
 * keeps the foreign error it wraps as `cause`. Foreign errors (axios, p-timeout, JSON) are mapped to
 * these at exactly one boundary each.
 */
/** Codes that are compared, not only shown: one spelling each. */
export const ERROR_CODES = {
  /** The circuit breaker refused the call (ScannerCircuitOpenError). */
  scannerCircuitOpen: 'SCANGATE_ERR_SCANNER_CIRCUIT_OPEN',
  /** MAX_CONCURRENT_SCANS scans are running: a new image is a scanner error (scan-coordinator.ts). */
  scannerBusy: 'SCANGATE_ERR_SCANNER_BUSY',
} as const;

export class ScangateError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad configuration: raised once at start-up, listing every problem. */
export class ConfigError extends ScangateError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('SCANGATE_ERR_CONFIG', `invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

/** A request body scangate cannot act on: answered with an HTTP 4xx, never a crash. */
export class BadRequestError extends ScangateError {
  readonly statusCode: number;
  constructor(message: string, statusCode = 400, options?: { cause?: unknown }) {
    super(statusCode === 413 ? 'SCANGATE_ERR_BODY_TOO_LARGE' : 'SCANGATE_ERR_BAD_REQUEST', message, options);
    this.statusCode = statusCode;
  }
}

/**
 * A per-process bound was reached (bytes of request bodies being read at once): answered 503 with
 * Retry-After, and the connection closed. The API server's failurePolicy then decides that request.
 */
export class OverloadedError extends ScangateError {
  readonly statusCode = 503;
  readonly retryAfterS: number;
  readonly reason: 'body_bytes';
  constructor(message: string, reason: 'body_bytes', retryAfterS = 1) {
    super('SCANGATE_ERR_OVERLOADED', message);
    this.reason = reason;
    this.retryAfterS = retryAfterS;
  }
}

/** Base class of everything that went wrong talking to the scanner. */
export class ScannerError extends ScangateError {
  /** Whether trying the same call again later may succeed. */
  readonly retryable: boolean;
  constructor(code: string, message: string, retryable: boolean, options?: { cause?: unknown }) {
    super(code, message, options);
    this.retryable = retryable;
  }
}

/** Connection refused/reset, DNS, TLS, or a 5xx answer. */
export class ScannerUnavailableError extends ScannerError {
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options?: { cause?: unknown; status?: number; retryAfterMs?: number }) {
    super('SCANGATE_ERR_SCANNER_UNAVAILABLE', message, true, options);
    this.status = options?.status;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/** 429: the scanner asks us to slow down (Retry-After honoured). */
export class ScannerRateLimitedError extends ScannerError {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryAfterMs: number | undefined) {
    super('SCANGATE_ERR_SCANNER_RATE_LIMITED', message, true);
    this.retryAfterMs = retryAfterMs;
  }
}

/** A single scanner call took longer than its own timeout. */
export class ScannerRequestTimeoutError extends ScannerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SCANGATE_ERR_SCANNER_REQUEST_TIMEOUT', message, true, options);
  }
}

/** 401/403: the credentials are wrong or lack permission. Not retried. */
export class ScannerAuthError extends ScannerError {
  readonly status: number;
  constructor(status: number) {
    super(
      'SCANGATE_ERR_SCANNER_AUTH',
      `scanner rejected the credentials (HTTP ${status}): check ANCHORE_CLI_USER / ANCHORE_CLI_PASS`,
      false,
    );
    this.status = status;
  }
}

/** The scanner answered something that is not the documented v1 shape (malformed JSON, wrong types). */
export class ScannerProtocolError extends ScannerError {
  /**
   * The answer could not be read at all (not JSON, a broken response): evidence against the scanner
   * service, counted by the circuit breaker. A readable answer of the wrong shape is not.
   */
  readonly unparseable: boolean;
  constructor(message: string, options?: { cause?: unknown; unparseable?: boolean }) {
    super('SCANGATE_ERR_SCANNER_PROTOCOL', message, false, options);
    this.unparseable = options?.unparseable ?? false;
  }
}

/** The scanner refused the request for a reason a retry will not fix (4xx, no active policy, ...). */
export class ScannerRequestError extends ScannerError {
  readonly status: number;
  constructor(message: string, status: number) {
    super('SCANGATE_ERR_SCANNER_REQUEST', message, false);
    this.status = status;
  }
}

/** The background scan ran past its own bound (SCAN_MAX_DURATION_MS) or was aborted at shutdown. */
export class ScanAbortedError extends ScannerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SCANGATE_ERR_SCAN_ABORTED', message, false, options);
  }
}

/**
 * The circuit breaker in front of the scanner is open (scanner/resilience.ts): the call was refused
 * without reaching the scanner. Not retried; the message says why it opened and when the next probe is.
 */
export class ScannerCircuitOpenError extends ScannerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ERROR_CODES.scannerCircuitOpen, message, false, options);
  }
}

/**
 * A call to the Kubernetes API (events) failed: `status` is the HTTP status (undefined: no answer, a
 * timeout or an abort). The message never holds the API server's answer, which may quote tenant text.
 */
export class KubeApiError extends ScangateError {
  readonly status: number | undefined;
  constructor(message: string, status: number | undefined, options?: { cause?: unknown }) {
    super('SCANGATE_ERR_KUBE_API', message, options);
    this.status = status;
  }
}

/** Short, secret-free description of any error, safe for logs and denial messages. */
export function describeError(error: unknown): { code: string; message: string } {
  if (error instanceof ScangateError) return { code: error.code, message: error.message };
  if (error instanceof Error) return { code: 'SCANGATE_ERR_INTERNAL', message: error.message };
  return { code: 'SCANGATE_ERR_INTERNAL', message: String(error) };
}

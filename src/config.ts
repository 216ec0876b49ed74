import { ConfigError } from './errors.js';
import { normaliseRegistry } from './policy/local-rules.js';
import { urlVersionProblem, type ApiVersionSetting } from './scanner/api-version.js';
import type { NamespaceMode } from './policy/mode.js';
import { DEFAULTS, settingsSchema } from './settings.js';

/** scangate's whole configuration, validated once at start-up and frozen. */
export interface Config {
  readonly server: {
    readonly host: string;
    readonly port: number;
    readonly tlsCertFile?: string;
    readonly tlsKeyFile?: string;
    readonly insecureHttp: boolean;
    readonly maxBodyBytes: number;
    /** Bound of the bytes of request bodies being read at once, over every connection. */
    readonly maxInflightBodyBytes: number;
    /** Bound of open connections (server.maxConnections); past it new connections are closed at once. */
    readonly maxConnections: number;
    readonly certReloadIntervalMs: number;
    readonly shutdownDelayMs: number;
    readonly shutdownTimeoutMs: number;
  };
  readonly scanner: {
    readonly url: string;
    /** ANCHORE_API_VERSION: auto asks the server (GET /v2/version); see scanner/api-version.ts. */
    readonly apiVersion: ApiVersionSetting;
    readonly user: string;
    readonly password: string;
    readonly policyId?: string;
    readonly account?: string;
    readonly caPem?: string;
    readonly insecureSkipTlsVerify: boolean;
    readonly requestTimeoutMs: number;
    readonly pollInitialMs: number;
    readonly pollMaxMs: number;
    /** First retry delay of a transient error (SCANNER_RETRY_BACKOFF_MS); doubles up to pollMaxMs. */
    readonly retryBackoffMs: number;
    readonly retryBudgetMs: number;
    readonly maxScanDurationMs: number;
    readonly maxConcurrentScans: number;
    /** Scans that reviews of one namespace may hold at once (MAX_SCANS_PER_NAMESPACE). */
    readonly maxScansPerNamespace: number;
    /** Bound of the new scans one request may start (fairness of the MAX_CONCURRENT_SCANS slots). */
    readonly maxNewScansPerRequest: number;
    /** Consecutive scanner failures that open the circuit breaker; 0: no breaker. */
    readonly breakerFailures: number;
    readonly breakerProbeIntervalMs: number;
  };
  readonly rules: { readonly denyLatestTag: boolean; readonly registryAllowlist: readonly string[] };
  readonly decision: {
    readonly mode: 'enforce' | 'warn';
    readonly rejectIfTimeout: boolean;
    /** WORKLOAD_MODE: how a workload's pod template is judged at apply time. */
    readonly workloadMode: 'enforce' | 'warn';
    /** NAMESPACE_MODES: the `scangate.io/mode` label values namespaces may choose. */
    readonly namespaceModes: readonly NamespaceMode[];
  };
  readonly exemptNamespaces: readonly string[];
  /**
   * Who may use the break-glass annotation (policy/break-glass.ts), and the proofs scangate writes for
   * a vetted template's controller-made pods: the key's file (absent: a random key made at start) and
   * how long a proof holds.
   */
  readonly breakGlass: {
    readonly users: readonly string[];
    readonly groups: readonly string[];
    readonly keyFile?: string;
    readonly proofTtlMs: number;
  };
  /** Digest pinning by the mutating webhook (`/mutate`); off by default. */
  readonly pinning: { readonly enabled: boolean };
  /** Bound of the container images one review may name; past it the review is denied. */
  readonly maxImagesPerReview: number;
  readonly cache: { readonly maxEntries: number; readonly maxBytes: number; readonly passTtlMs: number; readonly failTtlMs: number };
  readonly deadline: { readonly defaultTimeoutMs: number; readonly marginMs: number };
  /**
   * Kubernetes Events for decisions (observability/events.ts). `enabled` 'auto': on when Kubernetes
   * credentials are found (KUBECONFIG, or the pod's service account), off otherwise.
   */
  readonly events: {
    readonly enabled: 'auto' | boolean;
    readonly namespaceQps: number;
    readonly namespaceBurst: number;
    readonly maxQueued: number;
    readonly maxQueuedBytes: number;
  };
  /**
   * Re-verification of running workloads (engine/recheck.ts, README "Re-verification"); off unless
   * RECHECK_ENABLED. The Lease lives in POD_NAMESPACE.
   */
  readonly recheck: {
    readonly enabled: boolean;
    readonly intervalMs: number;
    readonly ratePerSecond: number;
    readonly maxInFlight: number;
    readonly metricNamespaces: number;
    readonly leaseName: string;
    readonly leaseNamespace: string;
    readonly leaseDurationMs: number;
  };
  /** POD_NAME (downward API): the reportingInstance of events; the host name when absent. */
  readonly podName?: string;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

/** Every setting with its default (settings.ts is the table they come from). */
export { DEFAULTS } from './settings.js';

/** Command-line flags that override the environment (`serve --port 9443`). */
export interface ServeFlags {
  readonly host?: string;
  readonly port?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly insecureHttp?: boolean;
  /** False for commands that serve nothing (`scangate check`). */
  readonly serving?: boolean;
}

export const URL_CREDENTIALS_PROBLEM =
  'ANCHORE_CLI_URL: must not carry credentials (user:password@host); set ANCHORE_CLI_USER and ANCHORE_CLI_PASS, or their _FILE variants, instead';

/** `user@`, `user:password@` or `:password@` in an http(s) URL; an unparseable URL is the schema's problem. */
function urlHasCredentials(value: string): boolean {
  if (!URL.canParse(value)) return /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(value);
  const url = new URL(value);
  return url.username !== '' || url.password !== '';
}

/**
 * Builds the configuration from the environment, flags and secret files. Throws one ConfigError that
 * lists every problem. `readFile` is injected so tests need no files; secret values never appear in
 * an error message.
 */
export function parseConfig(
  env: Readonly<Record<string, string | undefined>>,
  flags: ServeFlags = {},
  readFile: (path: string) => string = () => {
    throw new Error('no file reader');
  },
): Config {
  const problems: string[] = [];
  const raw: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(DEFAULTS)) raw[key] = env[key] ?? value;
  for (const key of ['TLS_CERT_FILE', 'TLS_KEY_FILE', 'ANCHORE_POLICY_ID', 'ANCHORE_ACCOUNT', 'POD_NAMESPACE', 'POD_NAME', 'ANCHORE_CLI_USER_FILE', 'ANCHORE_CLI_PASS_FILE', 'ANCHORE_CA_FILE']) {
    raw[key] = env[key];
  }
  if (flags.host !== undefined) raw['HOST'] = flags.host;
  if (flags.port !== undefined) raw['PORT'] = flags.port;
  if (flags.tlsCert !== undefined) raw['TLS_CERT_FILE'] = flags.tlsCert;
  if (flags.tlsKey !== undefined) raw['TLS_KEY_FILE'] = flags.tlsKey;
  if (flags.insecureHttp === true) raw['INSECURE_HTTP'] = 'true';

  // Credentials may come from files (Kubernetes secrets mounted as volumes); a file wins over env.
  const fromFile = (name: string, fileVar: string): void => {
    const file = env[fileVar];
    if (file === undefined || file === '') return;
    try {
      raw[name] = readFile(file).replace(/\r?\n$/, '');
    } catch (error) {
      problems.push(`${fileVar}: cannot read ${file} (${error instanceof Error && 'code' in error ? String(error.code) : 'error'})`);
    }
  };
  fromFile('ANCHORE_CLI_USER', 'ANCHORE_CLI_USER_FILE');
  fromFile('ANCHORE_CLI_PASS', 'ANCHORE_CLI_PASS_FILE');

  const parsed = settingsSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = String(issue.path[0] ?? '?');
      // Never echo a secret back, even when it is malformed.
      const message = key === 'ANCHORE_CLI_PASS' && issue.code !== 'too_big' ? 'invalid value' : issue.message;
      problems.push(`${key}: ${message}`);
    }
  }
  let caPem: string | undefined;
  const caFile = env['ANCHORE_CA_FILE'];
  if (caFile !== undefined && caFile !== '') {
    try {
      caPem = readFile(caFile);
      if (!caPem.includes('-----BEGIN CERTIFICATE-----')) problems.push(`ANCHORE_CA_FILE: ${caFile} holds no PEM certificate`);
    } catch (error) {
      problems.push(`ANCHORE_CA_FILE: cannot read ${caFile} (${error instanceof Error && 'code' in error ? String(error.code) : 'error'})`);
    }
  }
  // Credentials written into the URL would be sent nowhere (axios takes ANCHORE_CLI_USER/PASS) and
  // would sit in plain sight in the Deployment: refused, and the URL never echoed.
  if (urlHasCredentials(raw['ANCHORE_CLI_URL'] ?? '')) problems.push(URL_CREDENTIALS_PROBLEM);
  // Checked on the raw values too, so that one message lists this along with any type errors.
  const blank = (key: string): boolean => (raw[key] ?? '').trim() === '';
  if (flags.serving !== false && !['true', '1', 'yes'].includes(raw['INSECURE_HTTP'] ?? '') && (blank('TLS_CERT_FILE') || blank('TLS_KEY_FILE'))) {
    problems.push('TLS_CERT_FILE and TLS_KEY_FILE (or --tls-cert/--tls-key) are required; plain HTTP needs --insecure-http');
  }
  if (!parsed.success) throw new ConfigError(problems);
  const v = parsed.data;
  const versionProblem = urlVersionProblem(v.ANCHORE_API_VERSION, v.ANCHORE_CLI_URL);
  if (versionProblem !== undefined) problems.push(versionProblem);
  if (env['BREAK_GLASS_CONTROLLERS'] !== undefined) {
    problems.push(
      'BREAK_GLASS_CONTROLLERS: removed; a controller is never trusted by its identity: its pods break glass on the proof scangate writes into the template of a person allowed to (README, "Break-glass"); unset it',
    );
  }
  if (v.SCANNER_POLL_MAX_MS < v.SCANNER_POLL_INITIAL_MS) problems.push('SCANNER_POLL_MAX_MS: must be >= SCANNER_POLL_INITIAL_MS');
  if (v.MAX_INFLIGHT_BODY_BYTES < v.MAX_BODY_BYTES) problems.push('MAX_INFLIGHT_BODY_BYTES: must be >= MAX_BODY_BYTES (one whole body must fit)');
  if (v.ANCHORE_INSECURE_SKIP_TLS_VERIFY && caPem !== undefined) {
    problems.push('ANCHORE_INSECURE_SKIP_TLS_VERIFY and ANCHORE_CA_FILE contradict each other: pick one');
  }
  if (v.RECHECK_ENABLED && v.POD_NAMESPACE === undefined) {
    problems.push('RECHECK_ENABLED=true needs POD_NAMESPACE (the namespace of the re-check Lease; the chart sets it from the downward API)');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const exempt = new Set(v.EXEMPT_NAMESPACES);
  // scangate's own namespace is never blocked by scangate (it could not heal itself).
  if (v.POD_NAMESPACE !== undefined) exempt.add(v.POD_NAMESPACE);
  const config: Config = {
    server: {
      host: v.HOST,
      port: v.PORT,
      ...(v.TLS_CERT_FILE !== undefined ? { tlsCertFile: v.TLS_CERT_FILE } : {}),
      ...(v.TLS_KEY_FILE !== undefined ? { tlsKeyFile: v.TLS_KEY_FILE } : {}),
      insecureHttp: v.INSECURE_HTTP,
      maxBodyBytes: v.MAX_BODY_BYTES,
      maxInflightBodyBytes: v.MAX_INFLIGHT_BODY_BYTES,
      maxConnections: v.MAX_CONNECTIONS,
      certReloadIntervalMs: v.CERT_RELOAD_INTERVAL_MS,
      shutdownDelayMs: v.SHUTDOWN_DELAY_MS,
      shutdownTimeoutMs: v.SHUTDOWN_TIMEOUT_MS,
    },
    scanner: {
      url: v.ANCHORE_CLI_URL,
      apiVersion: v.ANCHORE_API_VERSION,
      user: v.ANCHORE_CLI_USER,
      password: v.ANCHORE_CLI_PASS,
      ...(v.ANCHORE_POLICY_ID !== undefined ? { policyId: v.ANCHORE_POLICY_ID } : {}),
      ...(v.ANCHORE_ACCOUNT !== undefined ? { account: v.ANCHORE_ACCOUNT } : {}),
      ...(caPem !== undefined ? { caPem } : {}),
      insecureSkipTlsVerify: v.ANCHORE_INSECURE_SKIP_TLS_VERIFY,
      requestTimeoutMs: v.SCANNER_REQUEST_TIMEOUT_MS,
      pollInitialMs: v.SCANNER_POLL_INITIAL_MS,
      pollMaxMs: v.SCANNER_POLL_MAX_MS,
      retryBackoffMs: v.SCANNER_RETRY_BACKOFF_MS,
      retryBudgetMs: v.SCANNER_RETRY_BUDGET_MS,
      maxScanDurationMs: v.SCAN_MAX_DURATION_MS,
      maxConcurrentScans: v.MAX_CONCURRENT_SCANS,
      maxScansPerNamespace: v.MAX_SCANS_PER_NAMESPACE,
      maxNewScansPerRequest: v.MAX_NEW_SCANS_PER_REQUEST,
      breakerFailures: v.SCANNER_BREAKER_FAILURES,
      breakerProbeIntervalMs: v.SCANNER_BREAKER_PROBE_INTERVAL_MS,
    },
    rules: { denyLatestTag: v.DENY_LATEST_TAG, registryAllowlist: v.REGISTRY_ALLOWLIST.map(normaliseRegistry) },
    decision: {
      mode: v.MODE,
      rejectIfTimeout: v.REJECT_IF_TIMEOUT,
      workloadMode: v.WORKLOAD_MODE,
      namespaceModes: [...new Set(v.NAMESPACE_MODES)],
    },
    exemptNamespaces: [...exempt],
    breakGlass: {
      users: v.BREAK_GLASS_USERS,
      groups: v.BREAK_GLASS_GROUPS,
      ...(v.BREAK_GLASS_KEY_FILE.trim() !== '' ? { keyFile: v.BREAK_GLASS_KEY_FILE.trim() } : {}),
      proofTtlMs: v.BREAK_GLASS_PROOF_TTL_S * 1000,
    },
    pinning: { enabled: v.PIN_DIGESTS },
    maxImagesPerReview: v.MAX_IMAGES_PER_REVIEW,
    cache: { maxEntries: v.CACHE_MAX_ENTRIES, maxBytes: v.CACHE_MAX_BYTES, passTtlMs: v.CACHE_PASS_TTL_MS, failTtlMs: v.CACHE_FAIL_TTL_MS },
    deadline: { defaultTimeoutMs: v.DEFAULT_TIMEOUT_MS, marginMs: v.DEADLINE_MARGIN_MS },
    events: {
      enabled: v.EVENTS_ENABLED,
      namespaceQps: v.EVENTS_QPS,
      namespaceBurst: v.EVENTS_BURST,
      maxQueued: v.EVENTS_QUEUE_MAX,
      maxQueuedBytes: v.EVENTS_QUEUE_MAX_BYTES,
    },
    recheck: {
      enabled: v.RECHECK_ENABLED,
      intervalMs: v.RECHECK_INTERVAL_S * 1000,
      ratePerSecond: v.RECHECK_RATE,
      maxInFlight: v.RECHECK_MAX_IN_FLIGHT,
      metricNamespaces: v.RECHECK_METRIC_NAMESPACES,
      leaseName: v.LEASE_NAME,
      leaseNamespace: v.POD_NAMESPACE ?? '',
      leaseDurationMs: v.LEASE_DURATION_S * 1000,
    },
    ...(v.POD_NAME !== undefined ? { podName: v.POD_NAME } : {}),
    logLevel: v.LOG_LEVEL,
  };
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

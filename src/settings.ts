/**
 * scangate's settings, one row each: the environment variable, how it is parsed (zod), its default,
 * what it means, and where the chart and deploy.sh set it. Everything else comes from this table:
 * config.ts's schema, its `z.infer` type and DEFAULTS; the README's settings table
 * (scripts/gen-settings.mjs); deploy.sh's CONFIG_KEYS; and test/unit/settings-table.test.ts checks
 * the README, the chart (values.yaml, values.schema.json, the ConfigMap) and deploy.sh against it.
 */
import { z } from 'zod';
import { NAMESPACE_MODES } from './policy/mode.js';
import { API_VERSION_SETTINGS, type ApiVersionSetting } from './scanner/api-version.js';
import { MAX_SECRET_LENGTH } from './scanner/credentials.js';

/** How a value is written: deploy.sh and the chart pass lists as JSON arrays, ints and bools bare. */
export type SettingKind = 'int' | 'bool' | 'list' | 'string';

/**
 * Where the chart sets a setting. `configmap`: from `value` (a values.yaml path) into the ConfigMap
 * (`scangate.settings` in templates/_helpers.tpl); `container`: on the container itself (its
 * environment, a mounted file); `none`: the chart does not set it (the chart's `env` map can).
 * `chartDefault`: the chart's value when it differs from scangate's on purpose.
 */
export type ChartBinding =
  | { readonly via: 'configmap'; readonly value: string; readonly chartDefault?: unknown }
  | { readonly via: 'container'; readonly value?: string; readonly chartDefault?: unknown }
  | { readonly via: 'none' };

export type SettingGroup = 'server' | 'scanner' | 'scans' | 'decisions' | 'break-glass' | 'cache' | 'deadline' | 'events' | 'recheck' | 'logging';

export interface Setting<S extends z.ZodType = z.ZodType> {
  readonly schema: S;
  readonly kind: SettingKind;
  /** The value taken when the variable is unset; undefined: unset (optional, or read another way). */
  readonly default?: string;
  /** The README's default cell, when the raw default alone would mislead. */
  readonly shown?: string;
  readonly description: string;
  readonly group: SettingGroup;
  readonly chart: ChartBinding;
  /** Bounds of an int setting (the chart's values.schema.json must agree). */
  readonly min?: number;
  readonly max?: number;
}

const boolSchema = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'expected true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const intSchema = (min: number, max: number): z.ZodPipe<z.ZodString, z.ZodTransform<number, string>> =>
  z.string().transform((v, ctx) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `expected a whole number from ${min} to ${max}, got "${v}"` });
      return z.NEVER;
    }
    return n;
  });
const listSchema = z.string().transform((v) => v.split(',').map((x) => x.trim()).filter((x) => x !== ''));
const optionalSchema = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

function int(min: number, max: number): { schema: ReturnType<typeof intSchema>; kind: 'int'; min: number; max: number } {
  return { schema: intSchema(min, max), kind: 'int', min, max };
}
const bool = (): { schema: typeof boolSchema; kind: 'bool' } => ({ schema: boolSchema, kind: 'bool' });
const list = (): { schema: typeof listSchema; kind: 'list' } => ({ schema: listSchema, kind: 'list' });
const optional = (): { schema: typeof optionalSchema; kind: 'string' } => ({ schema: optionalSchema, kind: 'string' });
const oneOf = <const T extends readonly [string, ...string[]]>(values: T, error: string): { schema: z.ZodEnum<{ [K in T[number]]: K }>; kind: 'string' } => ({
  schema: z.enum(values, { error }),
  kind: 'string',
});
const decimalSchema = (min: number, max: number): z.ZodPipe<z.ZodString, z.ZodTransform<number, string>> =>
  z.string().transform((v, ctx) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `expected a number from ${min} to ${max}, got "${v}"` });
      return z.NEVER;
    }
    return n;
  });
const secret = z.string().max(MAX_SECRET_LENGTH, { error: `must be at most ${MAX_SECRET_LENGTH} characters` });
const MiB = 1024 * 1024;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The table. Order is the README's order. */
export const SETTINGS = {
  // ---- server ----
  HOST: { schema: z.string().min(1), kind: 'string', default: '0.0.0.0', description: 'listen address', group: 'server', chart: { via: 'container' } },
  PORT: { ...int(0, 65535), default: '8443', description: 'listen port', group: 'server', chart: { via: 'container', value: 'server.containerPort' } },
  TLS_CERT_FILE: {
    ...optional(),
    shown: '— (required)',
    description: 'serving certificate (PEM); re-read when the file changes (`CERT_RELOAD_INTERVAL_MS`)',
    group: 'server',
    chart: { via: 'container' },
  },
  TLS_KEY_FILE: { ...optional(), shown: '— (required)', description: 'key of the serving certificate', group: 'server', chart: { via: 'container' } },
  INSECURE_HTTP: { ...bool(), default: 'false', description: 'serve plain HTTP (local use only; `--insecure-http`)', group: 'server', chart: { via: 'none' } },
  CERT_RELOAD_INTERVAL_MS: {
    ...int(100, 3_600_000),
    default: '10000',
    description: 'how often the serving certificate files are checked for changes',
    group: 'server',
    chart: { via: 'configmap', value: 'server.certReloadIntervalMs' },
  },
  MAX_BODY_BYTES: {
    ...int(1024, 64 * MiB),
    default: String(40 * MiB),
    description:
      'request body cap (413 past it); the default fits the review of a 3 MiB object as the API server writes it (`<` as `\\u003c`, object and oldObject)',
    group: 'server',
    chart: { via: 'configmap', value: 'server.maxBodyBytes' },
  },
  MAX_INFLIGHT_BODY_BYTES: {
    ...int(1024, 1024 * MiB),
    default: String(96 * MiB),
    description:
      'bytes of request bodies being read at once by all requests together (from the first byte until the body is parsed: a request waiting for scans holds none), shared fairly between client addresses: past it an upload still arriving from an address holding more than the asking one is cut (`scangate_overload_refusals_total{reason="body_bytes_preempted"}`), else 503 with `Retry-After: 1` and the connection closed; must be >= `MAX_BODY_BYTES`',
    group: 'server',
    chart: { via: 'configmap', value: 'server.maxInflightBodyBytes' },
  },
  MAX_CONNECTIONS: {
    ...int(1, 1_000_000),
    default: '512',
    description:
      'open connections, shared fairly between client addresses; past it the oldest idle (or still uploading) connection of an address holding more than the new one\'s is closed (`scangate_overload_refusals_total{reason="connections_preempted"}`), else the new connection is closed at once (`{reason="connections"}`)',
    group: 'server',
    chart: { via: 'configmap', value: 'server.maxConnections' },
  },
  SHUTDOWN_DELAY_MS: {
    ...int(0, 120_000),
    default: '0',
    description: 'after SIGTERM, keep serving (readiness off) this long before closing — set ~5000 in a cluster so endpoints update (the chart does)',
    group: 'server',
    chart: { via: 'configmap', value: 'server.shutdownDelayMs', chartDefault: 5000 },
  },
  SHUTDOWN_TIMEOUT_MS: {
    ...int(0, 300_000),
    default: '25000',
    description: 'bound for answering in-flight requests at shutdown',
    group: 'server',
    chart: { via: 'configmap', value: 'server.shutdownTimeoutMs' },
  },
  POD_NAMESPACE: { ...optional(), description: "scangate's own namespace (downward API); always exempt", group: 'server', chart: { via: 'container' } },
  POD_NAME: {
    ...optional(),
    shown: 'host name',
    description: '`reportingInstance` of the events (the chart sets it from the downward API)',
    group: 'server',
    chart: { via: 'container' },
  },
  // ---- scanner ----
  ANCHORE_CLI_URL: {
    schema: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL such as https://anchore.example:8228/v1' }),
    kind: 'string',
    default: 'http://localhost:8228/v1',
    description:
      'scanner URL, with or without a `/v1` or `/v2` suffix (read as in [Scanners](#scanners-which-anchore-and-which-api); Sysdig: `https://HOST/api/scanning/v1/anchore`). Credentials written into it (`user:password@`) are refused at start (`ANCHORE_CLI_URL: must not carry credentials (user:password@host); set ANCHORE_CLI_USER and ANCHORE_CLI_PASS, or their _FILE variants, instead`; the URL is not repeated). An `http://` URL to a host other than the loopback logs the warning `scanner credentials go over plain HTTP to HOST:PORT: ...` at start',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.url', chartDefault: '' },
  },
  ANCHORE_API_VERSION: {
    schema: z.enum(API_VERSION_SETTINGS as [ApiVersionSetting, ...ApiVersionSetting[]], { error: 'expected auto, v1 or v2' }),
    kind: 'string',
    default: 'auto',
    description: '`auto` asks `GET <root>/v2/version` at start and after an outage and speaks v2 or v1; `v1` / `v2` pin the API (must agree with a URL suffix)',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.apiVersion' },
  },
  ANCHORE_CLI_USER: {
    schema: secret.min(1, { error: 'must not be empty' }),
    kind: 'string',
    default: 'admin',
    description: 'scanner user (Sysdig: the API token); at most 1024 characters (`must be at most 1024 characters`)',
    group: 'scanner',
    chart: { via: 'container', value: 'scanner.user' },
  },
  ANCHORE_CLI_PASS: {
    schema: secret,
    kind: 'string',
    default: '',
    description: 'scanner password (Sysdig: empty); at most 1024 characters',
    group: 'scanner',
    chart: { via: 'container', value: 'scanner.password' },
  },
  ANCHORE_CLI_USER_FILE: {
    ...optional(),
    description: 'read the user from a file (a Kubernetes secret); the file wins over the variable',
    group: 'scanner',
    chart: { via: 'container' },
  },
  ANCHORE_CLI_PASS_FILE: {
    ...optional(),
    description: 'read the password from a file (a Kubernetes secret); the file wins over the variable',
    group: 'scanner',
    chart: { via: 'container' },
  },
  ANCHORE_POLICY_ID: {
    ...optional(),
    shown: "— (account's active bundle)",
    description: 'policy bundle for the check; also part of the cache key',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.policyId', chartDefault: '' },
  },
  ANCHORE_ACCOUNT: {
    ...optional(),
    description: '`x-anchore-account` header (admin users acting for another account)',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.account', chartDefault: '' },
  },
  ANCHORE_CA_FILE: {
    ...optional(),
    description: "PEM of a private CA for the scanner's certificate (TLS is verified by default); the chart sets it from `scanner.caCert` / `scanner.caFrom`",
    group: 'scanner',
    chart: { via: 'container' },
  },
  ANCHORE_INSECURE_SKIP_TLS_VERIFY: {
    ...bool(),
    default: 'false',
    description: 'skip scanner certificate verification (explicit, not recommended)',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.insecureSkipTLSVerify' },
  },
  SCANNER_REQUEST_TIMEOUT_MS: {
    ...int(100, 120_000),
    default: '5000',
    description: 'timeout of each scanner call',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.requestTimeoutMs' },
  },
  SCANNER_POLL_INITIAL_MS: {
    ...int(10, 60_000),
    default: '250',
    description:
      'analysis polling: the interval is this plus 10 % of the time already waited, capped at `SCANNER_POLL_MAX_MS` (an analysis of T seconds is seen at most ~10 % of T + 250 ms late)',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.pollInitialMs' },
  },
  SCANNER_POLL_MAX_MS: {
    ...int(10, 120_000),
    default: '2000',
    description: 'cap of the analysis polling interval; also the cap of the retry backoff',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.pollMaxMs' },
  },
  SCANNER_RETRY_BACKOFF_MS: {
    ...int(10, 60_000),
    default: '250',
    description: 'first delay before retrying a transient scanner error (5xx, 429, timeout, connection); doubles (with jitter) up to `SCANNER_POLL_MAX_MS`; a `Retry-After` sets it',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.retryBackoffMs' },
  },
  SCANNER_RETRY_BUDGET_MS: {
    ...int(0, 3_600_000),
    default: '20000',
    description: 'how long a scan keeps retrying transient errors',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.retryBudgetMs' },
  },
  SCANNER_BREAKER_FAILURES: {
    ...int(0, 10_000),
    default: '5',
    description:
      "consecutive failures of the scanner service itself (connection refused/reset, our call's timeout, 5xx, an unparseable answer) that open the circuit breaker; an image's slow or failed analysis and a 4xx about one image never count; `0` turns it off",
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.breakerFailures' },
  },
  SCANNER_BREAKER_PROBE_INTERVAL_MS: {
    ...int(100, 3_600_000),
    default: '5000',
    description: 'while the breaker is open, one probe (v1 `GET /status`, v2 `GET /v2/version`) goes to the scanner this often; any answer closes it',
    group: 'scanner',
    chart: { via: 'configmap', value: 'scanner.breakerProbeIntervalMs' },
  },
  // ---- scans ----
  SCAN_MAX_DURATION_MS: {
    ...int(1000, 24 * 3_600_000),
    default: '600000',
    description: 'bound of one background scan',
    group: 'scans',
    chart: { via: 'configmap', value: 'scanner.maxScanDurationMs' },
  },
  MAX_CONCURRENT_SCANS: {
    ...int(1, 100_000),
    default: '100',
    description: 'scans running at once; past it a new image is a scanner error (never an unbounded queue)',
    group: 'scans',
    chart: { via: 'configmap', value: 'scanner.maxConcurrentScans' },
  },
  MAX_SCANS_PER_NAMESPACE: {
    ...int(1, 100_000),
    default: '20',
    description:
      'scans in progress that the requests of one namespace may have started; past it their new images get `Image scan not started yet` (joining a scan in progress or a cache hit costs nothing). Twice this many requests of one namespace may wait for scans at once; the next ones are answered at once from what is known (`Image scan still in progress`)',
    group: 'scans',
    chart: { via: 'configmap', value: 'scanner.maxScansPerNamespace' },
  },
  MAX_NEW_SCANS_PER_REQUEST: {
    ...int(1, 100_000),
    default: '10',
    description:
      'new scans one review (`/mutate` included) may start, so one pod cannot take every scan slot; images past it get `Image scan not started yet` (`REJECT_IF_TIMEOUT` decides; metric `scangate_scans_deferred_total`)',
    group: 'scans',
    chart: { via: 'configmap', value: 'scanner.maxNewScansPerRequest' },
  },
  MAX_IMAGES_PER_REVIEW: {
    ...int(1, 100_000),
    default: '64',
    description: 'container images (containers + init + ephemeral) one review may name; past it the review is denied unjudged',
    group: 'scans',
    chart: { via: 'configmap', value: 'maxImagesPerReview' },
  },
  // ---- decisions ----
  REJECT_IF_TIMEOUT: {
    ...bool(),
    default: 'true',
    description: 'deny (true) or admit (false) when no verdict is available in time',
    group: 'decisions',
    chart: { via: 'configmap', value: 'rejectIfTimeout' },
  },
  DENY_LATEST_TAG: { ...bool(), default: 'true', description: 'refuse explicit and implied `latest`', group: 'decisions', chart: { via: 'configmap', value: 'denyLatestTag' } },
  REGISTRY_ALLOWLIST: {
    ...list(),
    default: '',
    shown: 'empty (all)',
    description: 'comma list of registry hosts, e.g. `docker.io,quay.io,localhost:5000` (`index.docker.io` = `docker.io`)',
    group: 'decisions',
    chart: { via: 'configmap', value: 'registryAllowlist' },
  },
  EXEMPT_NAMESPACES: {
    ...list(),
    default: 'kube-system',
    description: 'comma list of namespaces admitted untouched (the chart adds its release namespace)',
    group: 'decisions',
    chart: { via: 'configmap', value: 'exemptNamespaces' },
  },
  MODE: {
    ...oneOf(['enforce', 'warn'], 'expected enforce or warn'),
    default: 'enforce',
    description:
      'the cluster default: `warn` admits everything and returns the reasons as warnings; a namespace\'s `scangate.io/mode` label overrides it (see "Per-namespace mode")',
    group: 'decisions',
    chart: { via: 'configmap', value: 'mode' },
  },
  NAMESPACE_MODES: {
    schema: listSchema.pipe(z.array(z.enum(NAMESPACE_MODES, { error: `expected a comma list of ${NAMESPACE_MODES.join(', ')}` }))),
    kind: 'list',
    default: 'enforce,warn,off',
    description:
      'the `scangate.io/mode` label values namespaces may choose; `deploy.sh` registers one webhook entry per listed mode, and a request on `/validate/warn` when `warn` is not listed is judged in enforce mode',
    group: 'decisions',
    chart: { via: 'configmap', value: 'namespaceModes' },
  },
  WORKLOAD_MODE: {
    ...oneOf(['enforce', 'warn'], 'expected enforce or warn'),
    default: 'enforce',
    description:
      "`warn`: a workload's pod template (Deployment, CronJob, ...) is never refused at apply time, its findings come back as warnings; its pods are still judged when they are created",
    group: 'decisions',
    chart: { via: 'configmap', value: 'workloadMode' },
  },
  PIN_DIGESTS: {
    ...bool(),
    default: 'false',
    description:
      "digest pinning by the mutating webhook (`/mutate`): workload templates' and, with it, pods' images (`deploy.sh` always registers the templates entry, for break-glass proofs, and the pods entry only when true; `PIN_WEBHOOK_TIMEOUT_SECONDS`, default 15, is their timeout)",
    group: 'decisions',
    chart: { via: 'configmap', value: 'pinning.enabled' },
  },
  // ---- break-glass ----
  BREAK_GLASS_USERS: {
    ...list(),
    default: '',
    shown: 'empty (nobody)',
    description: 'comma list of usernames (`request.userInfo.username`) that may break glass',
    group: 'break-glass',
    chart: { via: 'configmap', value: 'breakGlass.users' },
  },
  BREAK_GLASS_GROUPS: {
    ...list(),
    default: '',
    shown: 'empty (none)',
    description: 'comma list of groups whose members may break glass',
    group: 'break-glass',
    chart: { via: 'configmap', value: 'breakGlass.groups' },
  },
  BREAK_GLASS_KEY_FILE: {
    schema: z.string(),
    kind: 'string',
    default: '',
    shown: 'empty (a random key made at start)',
    description:
      "file holding the key (at least 32 bytes) of the break-glass proofs scangate writes into the template of a person allowed to break glass; empty: a random key made at start, so proofs hold only for that process. The chart mounts its Secret `<release>-break-glass`, made once and kept",
    group: 'break-glass',
    chart: { via: 'none' },
  },
  BREAK_GLASS_PROOF_TTL_S: {
    ...int(60, 31_536_000),
    default: '86400',
    description: "seconds a break-glass proof written into a workload's template lets its controllers' pods in (60 to 31536000)",
    group: 'break-glass',
    chart: { via: 'configmap', value: 'breakGlass.proofTtlSeconds' },
  },
  // ---- cache ----
  CACHE_MAX_ENTRIES: {
    ...int(1, 10_000_000),
    default: '10000',
    description: 'verdict cache bound (count)',
    group: 'cache',
    chart: { via: 'configmap', value: 'cache.maxEntries' },
  },
  CACHE_MAX_BYTES: {
    ...int(64 * 1024, 16 * 1024 * MiB),
    default: String(32 * MiB),
    description: 'verdict cache bound (bytes of heap, as the cache counts them; see Verdict cache)',
    group: 'cache',
    chart: { via: 'configmap', value: 'cache.maxBytes' },
  },
  CACHE_PASS_TTL_MS: {
    ...int(0, 30 * 24 * 3_600_000),
    default: '3600000',
    description: 'lifetime of a pass verdict; `0` = do not cache passes',
    group: 'cache',
    chart: { via: 'configmap', value: 'cache.passTtlMs' },
  },
  CACHE_FAIL_TTL_MS: {
    ...int(0, 30 * 24 * 3_600_000),
    default: '300000',
    description: 'lifetime of a fail verdict; `0` = do not cache fails',
    group: 'cache',
    chart: { via: 'configmap', value: 'cache.failTtlMs' },
  },
  // ---- deadline ----
  DEFAULT_TIMEOUT_MS: {
    ...int(1000, 30_000),
    default: '10000',
    description: 'timeout assumed when the request carries none',
    group: 'deadline',
    chart: { via: 'configmap', value: 'deadline.defaultTimeoutMs' },
  },
  DEADLINE_MARGIN_MS: {
    ...int(0, 29_000),
    default: '1000',
    description: "kept back from the API server's timeout for the way back",
    group: 'deadline',
    chart: { via: 'configmap', value: 'deadline.marginMs' },
  },
  // ---- logging ----
  // ---- re-verification of running workloads ----
  RECHECK_ENABLED: {
    ...bool(),
    default: 'false',
    description: 're-verification of running workloads (see "Re-verification"); needs `POD_NAMESPACE` and Kubernetes credentials',
    group: 'recheck',
    chart: { via: 'configmap', value: 'recheck.enabled' },
  },
  RECHECK_INTERVAL_S: {
    ...int(60, 30 * 24 * 3600),
    default: '3600',
    description: 'each running image is asked at least this often, seconds',
    group: 'recheck',
    chart: { via: 'configmap', value: 'recheck.intervalSeconds' },
  },
  RECHECK_RATE: {
    schema: decimalSchema(0.001, 1000),
    kind: 'string',
    default: '1',
    description: 're-checks started per second (0.001 to 1000)',
    group: 'recheck',
    chart: { via: 'configmap', value: 'recheck.rate', chartDefault: 1 },
  },
  RECHECK_MAX_IN_FLIGHT: {
    ...int(1, 1000),
    default: '4',
    description: 're-checks in progress at once',
    group: 'recheck',
    chart: { via: 'configmap', value: 'recheck.maxInFlight' },
  },
  RECHECK_METRIC_NAMESPACES: {
    ...int(1, 10_000),
    default: '200',
    description: 'namespaces named in `scangate_running_images`; the rest are `_other`',
    group: 'recheck',
    chart: { via: 'configmap', value: 'recheck.metricNamespaces' },
  },
  LEASE_NAME: {
    schema: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, { error: 'expected a DNS subdomain name (lowercase letters, digits, - and .)' }),
    kind: 'string',
    default: 'scangate-recheck',
    description: 'the Lease (in `POD_NAMESPACE`) whose holder runs the loop',
    group: 'recheck',
    chart: { via: 'configmap', value: 'recheck.leaseName' },
  },
  LEASE_DURATION_S: {
    ...int(5, 3600),
    default: '15',
    description: 'how long a silent holder keeps the Lease before another replica takes it',
    group: 'recheck',
    chart: { via: 'configmap', value: 'recheck.leaseDurationSeconds' },
  },
  // ---- events ----
  EVENTS_ENABLED: {
    schema: z
      .enum(['auto', 'true', 'false', '1', '0', 'yes', 'no'], { error: 'expected auto, true or false' })
      .transform((v): 'auto' | boolean => (v === 'auto' ? 'auto' : v === 'true' || v === '1' || v === 'yes')),
    kind: 'string',
    default: 'auto',
    description:
      'Kubernetes Events for decisions ([Kubernetes Events](#kubernetes-events)): `auto` writes them when credentials are found (`KUBECONFIG`, else the pod\'s service account token; nothing else is guessed: no `~/.kube/config`), `true` also refuses to start without them (`EVENTS_ENABLED=true, but no Kubernetes credentials were found: ...`), `false` never. A `KUBECONFIG` that cannot be loaded is refused at start (`KUBECONFIG: cannot load it (...)`; the file is never quoted)',
    group: 'events',
    chart: { via: 'configmap', value: 'events.enabled', chartDefault: true },
  },
  EVENTS_QPS: {
    schema: decimalSchema(0.001, 10_000),
    kind: 'string',
    default: '1',
    description:
      'API calls (new events and series updates) per second per namespace; past it and `EVENTS_BURST` a new event is dropped (`scangate_events_dropped_total{reason="rate_limited"}`), a repeat is only counted and written with the next call',
    group: 'events',
    chart: { via: 'configmap', value: 'events.qps', chartDefault: 1 },
  },
  EVENTS_BURST: {
    ...int(1, 100_000),
    default: '25',
    description: 'how many API calls a quiet namespace may make at once',
    group: 'events',
    chart: { via: 'configmap', value: 'events.burst' },
  },
  EVENTS_QUEUE_MAX: {
    ...int(1, 1_000_000),
    default: '1000',
    description: 'events waiting to be written; past it a new event is dropped (`{reason="queue_full"}`)',
    group: 'events',
    chart: { via: 'configmap', value: 'events.queueMax' },
  },
  EVENTS_QUEUE_MAX_BYTES: {
    ...int(64 * 1024, 1024 * MiB),
    default: String(4 * MiB),
    description: 'bytes of the events waiting to be written; past it a new event is dropped (`{reason="queue_full"}`)',
    group: 'events',
    chart: { via: 'configmap', value: 'events.queueMaxBytes' },
  },
  LOG_LEVEL: {
    ...oneOf(LOG_LEVELS, 'expected a pino level (info, debug, ...)'),
    default: 'info',
    description: 'pino level',
    group: 'logging',
    chart: { via: 'configmap', value: 'logLevel' },
  },
} as const satisfies Record<string, Setting>;

export type SettingName = keyof typeof SETTINGS;
export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

/** The zod object of every setting, built from the table. */
export const settingsSchema = z.object(
  Object.fromEntries(SETTING_NAMES.map((name) => [name, SETTINGS[name].schema])) as { [K in SettingName]: (typeof SETTINGS)[K]['schema'] },
);
/** The parsed settings, flat, by variable name. */
export type Settings = z.infer<typeof settingsSchema>;

type Defaulted = { [K in SettingName]: (typeof SETTINGS)[K] extends { readonly default: string } ? K : never }[SettingName];
/** Every setting that has a default, with it (as the environment would hold it). */
export const DEFAULTS = Object.fromEntries(
  SETTING_NAMES.flatMap((name) => {
    const row: Setting = SETTINGS[name];
    return row.default !== undefined ? [[name, row.default]] : [];
  }),
) as { readonly [K in Defaulted]: string };

/** A markdown table cell: pipes escaped, no line breaks. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

/** The README's settings table (between its `settings-table` markers), generated from SETTINGS. */
export function settingsMarkdown(): string {
  const lines = ['| variable | default | meaning |', '| --- | --- | --- |'];
  for (const name of SETTING_NAMES) {
    const row: Setting = SETTINGS[name];
    const shown = row.shown ?? (row.default === undefined ? '—' : row.default === '' ? 'empty' : `\`${row.default}\``);
    lines.push(`| \`${name}\` | ${cell(shown)} | ${cell(row.description)} |`);
  }
  return lines.join('\n');
}

/** The chart's value for a setting's default: what values.yaml should hold. */
export function chartValueOf(row: Setting): unknown {
  if (row.chart.via !== 'none' && row.chart.chartDefault !== undefined) return row.chart.chartDefault;
  const raw = row.default ?? '';
  switch (row.kind) {
    case 'int':
      return Number(raw);
    case 'bool':
      return raw === 'true' || raw === '1' || raw === 'yes';
    case 'list':
      return raw.split(',').map((x) => x.trim()).filter((x) => x !== '');
    case 'string':
      return raw;
  }
}

/**
 * deploy.sh's block between its `settings` markers: the settings it passes to the chart when set, the
 * chart value each maps to, and how it is written.
 */
export function deployShellBlock(): string {
  const rows = SETTING_NAMES.flatMap((name) => {
    const row: Setting = SETTINGS[name];
    return row.chart.via === 'configmap' ? [{ name, value: row.chart.value, kind: row.kind }] : [];
  });
  const keys: string[] = [];
  let line = 'CONFIG_KEYS=(';
  for (const { name } of rows) {
    if (line.length + name.length > 110) {
      keys.push(line.trimEnd());
      line = '  ';
    }
    line += `${name} `;
  }
  keys.push(`${line.trimEnd()})`);
  const map = rows.map(({ name, value, kind }) => `  [${name}]=${value}:${kind}`);
  return [...keys, 'declare -A SETTING_VALUE=(', ...map, ')'].join('\n');
}

/** The markers around the generated blocks (scripts/gen-settings.mjs writes between them). */
export const GENERATED = {
  readme: ['<!-- settings-table:begin (generated from src/settings.ts by `make settings`) -->', '<!-- settings-table:end -->'],
  deploy: ['# settings:begin (generated from src/settings.ts by `make settings`)', '# settings:end'],
} as const;

/** The text between a pair of markers, or undefined when they are missing. */
export function generatedBlock(text: string, [begin, end]: readonly [string, string]): string | undefined {
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from < 0 || to < from) return undefined;
  return text.slice(from + begin.length, to).replace(/^\n/, '').replace(/\n$/, '');
}

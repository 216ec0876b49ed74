/**
 * Fault injection for the scanner simulator.
 *
 * Transport faults decide how an API call (v1 or v2) is answered, before authentication and routing:
 * - `latencyMs`: wait this long before answering.
 * - `hang: true`: accept the request and never answer (the socket is destroyed by close()).
 * - `status`: answer with this HTTP status and an Anchore error body; `retryAfterSeconds` adds a
 *   `Retry-After` header (and a `WWW-Authenticate` header comes with 401).
 * - `malformed: true`: 200, `content-type: application/json`, a body that is not JSON.
 * - `wrongShape: true`: 200 with valid JSON of the wrong shape. v1: an object where Anchore answers an
 *   array (addImage, getImage, listImages, check), an array where it answers an object (vuln). v2:
 *   an array where it answers an object (every v2 operation).
 * When several are set, `hang` wins over `status`, `status` over `malformed`, `malformed` over
 * `wrongShape`. `operations` limits all transport faults (latency included) to those operations
 * ('addImage' | 'getImage' | 'listImages' | 'check' | 'vuln' | 'version'; without it every API call
 * matches, unknown routes too, except the version endpoint `GET /v2/version`, which is faulted only
 * when `operations` names 'version': the image API's faults must not turn into API-detection
 * failures of a client that probes the version first). `times: N` applies them to the first N
 * matching calls only, counted from the moment the config was set; later calls are answered normally.
 *
 * Analysis faults change what the scanner knows, for as long as they are set (not limited by
 * `times` or `operations`):
 * - `analysisFailed`: repositories (`docker.io/library/nginx`, short names are normalised) or
 *   fulltags whose analysis ends in `analysis_failed` once the analysis delay is over.
 * - `neverAnalyzed`: repositories or fulltags that stay `analyzing` forever (check and vuln 404).
 * - `noActivePolicy: true`: check answers 404 `user has no active policy to evaluate: <user>`.
 */
import { z } from 'zod';
import { SimulatorConfigError } from './errors.js';
import { fulltagOf, parseSimImageRef } from './reference.js';

export const OPERATIONS = ['addImage', 'getImage', 'listImages', 'check', 'vuln', 'version'] as const;
export type SimOperation = (typeof OPERATIONS)[number];
/** What an API request is: one of the operations, or anything else (status, ping, unknown routes). */
export type RouteOperation = SimOperation | 'other';

/** See the module comment for the meaning of every knob. */
export interface FaultConfig {
  latencyMs?: number | undefined;
  status?: number | undefined;
  retryAfterSeconds?: number | undefined;
  times?: number | undefined;
  operations?: readonly SimOperation[] | undefined;
  hang?: boolean | undefined;
  malformed?: boolean | undefined;
  wrongShape?: boolean | undefined;
  analysisFailed?: readonly string[] | undefined;
  neverAnalyzed?: readonly string[] | undefined;
  noActivePolicy?: boolean | undefined;
}

const faultSchema = z.strictObject({
  latencyMs: z.number().int().min(0).max(3_600_000).optional(),
  status: z.number().int().min(100).max(599).optional(),
  retryAfterSeconds: z.number().int().min(0).optional(),
  times: z.number().int().min(0).optional(),
  operations: z.array(z.enum(OPERATIONS)).optional(),
  hang: z.boolean().optional(),
  malformed: z.boolean().optional(),
  wrongShape: z.boolean().optional(),
  analysisFailed: z.array(z.string().min(1)).optional(),
  neverAnalyzed: z.array(z.string().min(1)).optional(),
  noActivePolicy: z.boolean().optional(),
});

/** Validates a FaultConfig (from the admin endpoint or from code); throws SimulatorConfigError. */
export function parseFaultConfig(raw: unknown): FaultConfig {
  const result = faultSchema.safeParse(raw);
  if (!result.success) {
    throw new SimulatorConfigError(
      'fault config',
      result.error.issues.map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(root)'}: ${i.message}`),
      { cause: result.error },
    );
  }
  return result.data;
}

export type TransportFault =
  | { readonly kind: 'hang' }
  | { readonly kind: 'status'; readonly status: number; readonly retryAfterSeconds?: number }
  | { readonly kind: 'malformed' }
  | { readonly kind: 'wrongShape' };

export interface FaultDecision {
  readonly latencyMs: number;
  readonly fault: TransportFault | undefined;
}

const NO_FAULT: FaultDecision = { latencyMs: 0, fault: undefined };

/** Matches image fulltags against a list of repositories or fulltags. */
export class ImageMatcher {
  private readonly repositories = new Set<string>();
  private readonly fulltags = new Set<string>();

  constructor(entries: readonly string[] = []) {
    for (const entry of entries) {
      const parsed = parseSimImageRef(entry);
      if (!parsed.ok) {
        this.repositories.add(entry);
        this.fulltags.add(entry);
      } else if (parsed.ref.tag === undefined) {
        this.repositories.add(parsed.ref.repository);
      } else {
        this.fulltags.add(fulltagOf(parsed.ref));
      }
    }
  }

  get empty(): boolean {
    return this.repositories.size === 0 && this.fulltags.size === 0;
  }

  /** `images`: the image's normalised fulltags. */
  matches(images: Iterable<{ readonly fulltag: string; readonly repository: string }>): boolean {
    if (this.empty) return false;
    for (const image of images) {
      if (this.fulltags.has(image.fulltag) || this.repositories.has(image.repository)) return true;
    }
    return false;
  }
}

/** One fault config plus the state it needs (how many of `times` are used up). */
export class FaultInjector {
  readonly config: FaultConfig;
  readonly analysisFailed: ImageMatcher;
  readonly neverAnalyzed: ImageMatcher;
  private used = 0;

  constructor(config: FaultConfig = {}) {
    this.config = parseFaultConfig(config);
    this.analysisFailed = new ImageMatcher(this.config.analysisFailed);
    this.neverAnalyzed = new ImageMatcher(this.config.neverAnalyzed);
  }

  get noActivePolicy(): boolean {
    return this.config.noActivePolicy === true;
  }

  /** Decides how one API call is answered; a matching call uses up one of `times`. */
  decide(operation: RouteOperation): FaultDecision {
    const c = this.config;
    if (operation === 'version' && c.operations?.includes('version') !== true) return NO_FAULT;
    const fault: TransportFault | undefined = c.hang
      ? { kind: 'hang' }
      : c.status !== undefined
        ? { kind: 'status', status: c.status, ...(c.retryAfterSeconds !== undefined ? { retryAfterSeconds: c.retryAfterSeconds } : {}) }
        : c.malformed
          ? { kind: 'malformed' }
          : c.wrongShape
            ? { kind: 'wrongShape' }
            : undefined;
    const latencyMs = c.latencyMs ?? 0;
    if (fault === undefined && latencyMs === 0) return NO_FAULT;
    if (c.operations !== undefined && !(c.operations as readonly string[]).includes(operation)) return NO_FAULT;
    if (c.times !== undefined) {
      if (this.used >= c.times) return NO_FAULT;
      this.used += 1;
    }
    return { latencyMs, fault };
  }
}

/**
 * Digest pinning (PIN_DIGESTS): the mutating webhook's engine. For each image it may pin, it asks for
 * the verdict within the request's budget (the same cache and scans as the validating webhook) and,
 * when there is one, rewrites `name:tag` to `name:tag@<digest that was scanned>`. It never refuses:
 * an image without a verdict in time is left as written and the validating webhook decides as always.
 */
import { checkLocalRules } from '../policy/local-rules.js';
import type { LocalRules, ScanVerdict } from '../policy/types.js';
import { createScanBudget, type ScanCoordinator } from './scan-coordinator.js';

export interface PinRequest {
  readonly targets: ReadonlyArray<{ readonly path: string; readonly image: string }>;
  readonly namespace?: string;
  readonly budgetMs: number;
  /** A dry run starts no scan. */
  readonly dryRun?: boolean;
}

export interface Pin {
  readonly path: string;
  readonly image: string;
  readonly pinned: string;
  readonly digest: string;
}

/** Why an image was left as written (log line, metric label). */
export type UnpinnedReason = 'already_pinned' | 'local_rule' | 'no_verdict';

export interface PinResult {
  readonly exempt: boolean;
  readonly pins: readonly Pin[];
  readonly unpinned: ReadonlyArray<{ readonly image: string; readonly reason: UnpinnedReason }>;
}

export interface PinnerOptions {
  readonly rules: LocalRules;
  readonly exemptNamespaces: readonly string[];
  readonly coordinator: ScanCoordinator;
  /** New scans one request may start (MAX_NEW_SCANS_PER_REQUEST), as on the validating side. */
  readonly maxNewScansPerRequest?: number;
  readonly now?: () => number;
}

export interface Pinner {
  pin(request: PinRequest): Promise<PinResult>;
}

/** The digest a verdict pins to: the manifest list when the scanner reported one, else the analysed manifest. */
export function verdictPinDigest(verdict: ScanVerdict): string {
  return verdict.pinDigest ?? verdict.digest;
}

/** `image` with the digest appended, as written (`nginx:1.25` -> `nginx:1.25@sha256:…`). Pure. */
export function pinnedImage(image: string, digest: string): string {
  return `${image}@${digest}`;
}

export function createPinner(opts: PinnerOptions): Pinner {
  const now = opts.now ?? (() => performance.now());
  const exempt = new Set(opts.exemptNamespaces);
  return {
    async pin(request) {
      if (request.namespace !== undefined && exempt.has(request.namespace)) return { exempt: true, pins: [], unpinned: [] };
      const deadlineAt = now() + request.budgetMs;
      const budget = createScanBudget(opts.maxNewScansPerRequest ?? Number.MAX_SAFE_INTEGER, request.namespace, request.dryRun === true);
      const unpinned: Array<{ image: string; reason: UnpinnedReason }> = [];
      // One lookup per distinct image; every container that uses it gets the same pin.
      const verdicts = new Map<string, Promise<ScanVerdict | undefined>>();
      const lookups = request.targets.map(async (t): Promise<Pin | undefined> => {
        const { reference, finding } = checkLocalRules(t.image, opts.rules);
        if (reference === undefined || finding !== undefined) {
          unpinned.push({ image: t.image, reason: 'local_rule' });
          return undefined;
        }
        if (reference.digest !== undefined) {
          unpinned.push({ image: t.image, reason: 'already_pinned' });
          return undefined;
        }
        let pending = verdicts.get(t.image);
        if (pending === undefined) {
          pending = opts.coordinator.lookup(reference, deadlineAt - now(), budget).then(({ outcome }) => (outcome.kind === 'verdict' ? outcome.verdict : undefined));
          verdicts.set(t.image, pending);
        }
        const verdict = await pending;
        if (verdict === undefined) {
          unpinned.push({ image: t.image, reason: 'no_verdict' });
          return undefined;
        }
        const digest = verdictPinDigest(verdict);
        const pinned = pinnedImage(t.image, digest);
        const check = checkLocalRules(pinned, opts.rules);
        if (check.reference === undefined || check.finding !== undefined) {
          // The pinned form must be one the validating webhook accepts as it accepted the tag.
          unpinned.push({ image: t.image, reason: 'local_rule' });
          return undefined;
        }
        // The validating webhook will look the pinned reference up: give it this verdict.
        opts.coordinator.remember(check.reference, verdict, reference);
        return { path: t.path, image: t.image, pinned, digest };
      });
      const pins = (await Promise.all(lookups)).filter((p): p is Pin => p !== undefined);
      return { exempt: false, pins, unpinned };
    },
  };
}

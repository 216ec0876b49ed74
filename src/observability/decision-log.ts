/**
 * The decision log and the decision metrics: an observer of the admission core (admission/core.ts),
 * the measured-webhook pattern: the core decides, this wrapper counts and writes one line per decision.
 * Every tenant-written text is escaped and bounded here, by the one escaper (policy/safe-text.ts).
 */
import type { Logger } from 'pino';
import type { DecisionObserver, DecisionRecord } from '../admission/decision-record.js';
import type { ImageReport } from '../engine/evaluator.js';
import { describeError } from '../errors.js';
import { displayImage, displayText } from '../policy/safe-text.js';
import type { Metrics } from './metrics.js';

/** Images listed in one decision log line; the rest are counted (`imagesOmitted`). */
const LOG_MAX_IMAGES = 16;
/** Characters of any other tenant-written text (uid, pod, namespace, ...) in a log line. */
const LOG_MAX_FIELD_CHARS = 256;

/** Tenant-written text (uid, pod, namespace, ...) as a log line holds it: escaped and cut. */
function logText(text: string | undefined): string | undefined {
  return text === undefined ? undefined : displayText(text, LOG_MAX_FIELD_CHARS);
}

function cacheCounts(images: readonly ImageReport[]): { hit: number; miss: number; shared: number } {
  const counts = { hit: 0, miss: 0, shared: 0 };
  for (const image of images) if (image.cache !== undefined) counts[image.cache] += 1;
  return counts;
}

/**
 * The `result` of the log line and of scangate_decisions_total (README): admissions by break-glass or
 * without a verdict count as allowed (warned in warn mode), as they always have.
 */
function metricResult(record: DecisionRecord): 'allowed' | 'denied' | 'warned' | 'exempt' {
  switch (record.result) {
    case 'glass':
    case 'unverified':
      return record.mode === 'warn' ? 'warned' : 'allowed';
    default:
      return record.result;
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

export function createDecisionLog(opts: { readonly logger: Logger; readonly metrics: Metrics }): DecisionObserver {
  const { logger, metrics } = opts;
  return {
    decided(record) {
      const result = metricResult(record);
      metrics.decisions.inc({ endpoint: record.endpoint, result });
      metrics.decisionDuration.observe({ endpoint: record.endpoint }, record.durationMs / 1000);
      const pod = record.regarding.kind === 'Pod';
      // One shape for every request (pino leaves out the fields that are undefined).
      const fields = {
        endpoint: record.endpoint,
        uid: logText(record.uid),
        operation: record.endpoint === 'image_policy' ? undefined : logText(record.operation),
        subResource: record.subResource !== undefined && record.subResource !== '' ? logText(record.subResource) : undefined,
        pod: pod && record.endpoint !== 'image_policy' ? logText(record.regarding.name) : undefined,
        kind: pod ? undefined : record.regarding.kind,
        name: pod ? undefined : logText(record.regarding.name),
        namespace: logText(record.regarding.namespace),
      };
      if (record.modeRefused !== undefined) {
        logger.warn({ ...fields }, `mode ${record.modeRefused} is not in NAMESPACE_MODES: judged in ${record.mode} mode`);
      }
      const glass = record.breakGlass;
      if (glass !== undefined) {
        metrics.breakGlass.inc({ outcome: glass.outcome });
        // One line per use, at warn so it stands out: who, why (escaped, bounded tenant text), what it did.
        logger.warn(
          { ...fields, user: glass.user, via: record.breakGlassVia, reason: glass.reason, outcome: glass.outcome, bypassed: record.bypassed },
          'break-glass',
        );
      }
      const omitted = record.images.length - LOG_MAX_IMAGES;
      logger.info(
        {
          ...fields,
          mode: record.mode,
          // Image texts are display text already (the evaluator escaped and cut them).
          images: omitted > 0 ? record.images.slice(0, LOG_MAX_IMAGES) : record.images,
          ...(omitted > 0 ? { imagesOmitted: omitted } : {}),
          allowed: record.result !== 'denied',
          result,
          ...(record.message !== '' ? { reasons: record.message } : {}),
          ...(record.dryRun ? { dryRun: true } : {}),
          cache: cacheCounts(record.images),
          budgetMs: record.budgetMs,
          durationMs: round(record.durationMs),
        },
        'decision',
      );
    },
    mutated(record) {
      const fields = { endpoint: 'mutate', uid: logText(record.uid), operation: logText(record.operation), namespace: logText(record.namespace), resource: logText(record.resource) };
      if (record.error !== undefined) {
        logger.error({ ...fields, err: describeError(record.error) }, 'pinning failed; answered unchanged');
        return;
      }
      // Nothing to pin and no proof to write: not a decision worth a line or a count.
      if (record.pinned.length === 0 && record.unpinned.length === 0 && record.proofFor === undefined && !record.exempt) return;
      if (record.pinned.length > 0) metrics.pins.inc({ result: 'pinned' }, record.pinned.length);
      for (const u of record.unpinned) metrics.pins.inc({ result: u.reason });
      metrics.decisions.inc({ endpoint: 'mutate', result: record.exempt ? 'exempt' : 'allowed' });
      metrics.decisionDuration.observe({ endpoint: 'mutate' }, record.durationMs / 1000);
      if (record.proofFor !== undefined) logger.warn({ ...fields, user: logText(record.proofFor) }, 'break-glass proof written into the template');
      if (record.pinned.length === 0 && record.unpinned.length === 0) return;
      logger.info(
        {
          ...fields,
          pinned: record.pinned.map((p) => ({ image: displayImage(p.image), digest: p.digest })),
          unpinned: record.unpinned.map((u) => ({ image: displayImage(u.image), reason: u.reason })),
          budgetMs: record.budgetMs,
          durationMs: round(record.durationMs),
        },
        'pin',
      );
    },
    unchanged(record) {
      metrics.decisions.inc({ endpoint: 'validate', result: 'unchanged' });
      logger.debug({ endpoint: 'validate', uid: logText(record.uid), operation: logText(record.operation), namespace: logText(record.namespace), kind: record.kind, name: logText(record.name) }, 'no image changed');
    },
  };
}

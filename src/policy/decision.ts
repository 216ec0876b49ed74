import type {
  ContainerImage,
  Decision,
  DecisionOptions,
  Finding,
  ImageAssessment,
  ScanOutcome,
  StopReason,
} from './types.js';
import { displayImage, escapeControls } from './safe-text.js';

/** Message prefixes: part of scangate's interface (README, e2e tests, operators' alerts). */
export const MESSAGES = {
  invalidReference: 'Invalid image reference',
  latestTag: 'Images using latest tag are not allowed',
  registry: 'Images from a registry that is not allowed',
  policyFail: 'Image failed policy check',
  timeout: 'Image scan still in progress',
  deferred: 'Image scan not started yet',
  tooManyImages: 'Too many images in one review',
  scannerError: 'Scanner error',
  /** The circuit breaker in front of the scanner is open: decided at once, without asking it. */
  scannerUnavailable: 'Scanner unavailable',
} as const;

/** The warning of a workload admitted before its images' verdicts were known. */
export const WORKLOAD_WITHOUT_VERDICT = 'admitted without a verdict; its pods will be checked when they are created';

/** ScanOutcome error code of a call refused by the open circuit breaker (errors.ts ScannerCircuitOpenError). */
const CIRCUIT_OPEN_CODE = 'SCANGATE_ERR_SCANNER_CIRCUIT_OPEN';

const DEFAULT_MAX_MESSAGE_LENGTH = 1000;
const MAX_WARNING_LENGTH = 250;

const CONTAINER_LABELS: Readonly<Record<ContainerImage['kind'], string>> = {
  container: 'container',
  initContainer: 'init container',
  ephemeralContainer: 'ephemeral container',
  imageVolume: 'image volume',
};

/** `container "web"`; in a workload's template `deployment "shop" container "web"`. */
function describeContainers(containers: readonly ContainerImage[]): string {
  const parts = containers.map((c) => {
    const owner = c.workload === undefined ? '' : `${c.workload.kind.toLowerCase()}${c.workload.name !== undefined ? ` "${escapeControls(c.workload.name)}"` : ''} `;
    return `${owner}${CONTAINER_LABELS[c.kind]} "${escapeControls(c.container)}"`;
  });
  return parts.join(', ');
}

function truncate(text: string, max: number): string {
  const flat = escapeControls(text.replace(/\s+/g, ' ').trim());
  return flat.length <= max ? flat : `${flat.slice(0, Math.max(0, max - 1))}…`;
}

export function describeReasons(reasons: readonly StopReason[], omitted: number, maxReasons: number, maxOutput: number): string {
  const total = reasons.length + omitted;
  if (maxReasons === 0 || reasons.length === 0) {
    return total === 0 ? '' : `${total} stop rule${total === 1 ? '' : 's'} triggered`;
  }
  const shown = reasons.slice(0, maxReasons).map((r) => `${truncate(r.gate, 64)}/${truncate(r.trigger, 64)}: ${truncate(r.output, maxOutput)}`);
  const more = total - shown.length;
  return shown.join('; ') + (more > 0 ? `; +${more} more` : '');
}

/** A workload is never refused for a verdict that is not there yet: its pods are checked at creation. */
function missingVerdictDenies(opts: DecisionOptions): boolean {
  return opts.subject !== 'workload' && opts.rejectIfTimeout;
}

function outcomeFinding(a: ImageAssessment, scan: ScanOutcome, opts: DecisionOptions): Finding | undefined {
  const base = { image: a.image, containers: a.containers };
  switch (scan.kind) {
    case 'verdict':
      if (scan.verdict.status === 'pass') return undefined;
      return { ...base, kind: 'policy-fail', detail: '', denies: true };
    case 'timeout':
      return {
        ...base,
        kind: 'scan-timeout',
        detail: `no verdict within ${(scan.waitedMs / 1000).toFixed(1)}s; the scan continues in the background and a retry will use its verdict`,
        denies: missingVerdictDenies(opts),
      };
    case 'deferred':
      return {
        ...base,
        kind: 'scan-deferred',
        detail: `this review already started ${scan.maxNewScans} new scans (MAX_NEW_SCANS_PER_REQUEST); a retry starts the next ones`,
        denies: missingVerdictDenies(opts),
      };
    case 'error':
      return {
        ...base,
        kind: scan.code === CIRCUIT_OPEN_CODE ? 'scanner-unavailable' : 'scanner-error',
        detail: scan.message,
        denies: missingVerdictDenies(opts),
      };
  }
}

/** Collects the findings of every image, in request order. Pure. */
export function collectFindings(images: readonly ImageAssessment[], opts: DecisionOptions): Finding[] {
  const findings: Finding[] = [];
  for (const a of images) {
    const base = { image: a.image, containers: a.containers, denies: true };
    if (a.local !== undefined) {
      switch (a.local.kind) {
        case 'invalid-reference':
          findings.push({ ...base, kind: 'invalid-reference', detail: a.local.error });
          break;
        case 'latest-tag':
          findings.push({ ...base, kind: 'latest-tag', detail: '' });
          break;
        case 'registry-not-allowed':
          findings.push({ ...base, kind: 'registry-not-allowed', detail: `registry ${a.local.registry}` });
          break;
      }
      continue;
    }
    if (a.scan !== undefined) {
      const f = outcomeFinding(a, a.scan, opts);
      if (f !== undefined) findings.push(f);
    }
  }
  return findings;
}

const ANALYSIS_FAILED: readonly StopReason[] = [{ gate: 'analysis', trigger: 'failed', output: 'the scanner could not analyse the image' }];

/** The stop rows of each failed image, looked up once per image (linear in the number of images). */
function reasonsByImage(images: readonly ImageAssessment[]): Map<string, { reasons: readonly StopReason[]; omitted: number }> {
  const byImage = new Map<string, { reasons: readonly StopReason[]; omitted: number }>();
  for (const a of images) {
    if (byImage.has(a.image) || a.scan?.kind !== 'verdict' || a.scan.verdict.status !== 'fail') continue;
    const v = a.scan.verdict;
    byImage.set(a.image, v.cause === 'analysis_failed' ? { reasons: ANALYSIS_FAILED, omitted: 0 } : { reasons: v.reasons, omitted: v.omittedReasons ?? 0 });
  }
  return byImage;
}

/** One sentence per finding kind; each policy failure is its own sentence with its reasons. */
function renderSegments(
  findings: readonly Finding[],
  images: readonly ImageAssessment[],
  maxReasons: number,
  maxOutput: number,
): string[] {
  const segments: string[] = [];
  const reasons = reasonsByImage(images);
  const group = (kind: Finding['kind'], prefix: string): void => {
    const items = findings.filter((f) => f.kind === kind);
    if (items.length === 0) return;
    const list = items.map((f) => `${displayImage(f.image)} (${describeContainers(f.containers)}${f.detail ? `: ${escapeControls(f.detail)}` : ''})`);
    segments.push(`${prefix}: ${list.join(', ')}`);
  };
  group('invalid-reference', MESSAGES.invalidReference);
  group('latest-tag', MESSAGES.latestTag);
  group('registry-not-allowed', MESSAGES.registry);
  for (const f of findings.filter((x) => x.kind === 'policy-fail')) {
    const rows = reasons.get(f.image);
    const text = rows === undefined ? '' : describeReasons(rows.reasons, rows.omitted, maxReasons, maxOutput);
    segments.push(`${MESSAGES.policyFail}: ${displayImage(f.image)} (${describeContainers(f.containers)})${text ? `: ${text}` : ''}`);
  }
  group('scan-timeout', MESSAGES.timeout);
  group('scan-deferred', MESSAGES.deferred);
  group('scanner-error', MESSAGES.scannerError);
  // Every image got the same answer from the breaker: its explanation is given once, after them.
  const unavailable = findings.filter((f) => f.kind === 'scanner-unavailable');
  if (unavailable.length > 0) {
    const list = unavailable.map((f) => `${f.image} (${describeContainers(f.containers)})`);
    segments.push(`${MESSAGES.scannerUnavailable}: ${list.join(', ')}: ${unavailable[0]?.detail ?? ''}`);
  }
  return segments;
}

/**
 * Renders the findings into one message that names every offending image. When the message would
 * exceed the cap (Kubernetes events are meant to be short), the scanner's reasons are shortened first,
 * then dropped, so that no image is ever left out before the hard cut.
 */
export function renderMessage(findings: readonly Finding[], images: readonly ImageAssessment[], maxLength: number): string {
  const attempts: ReadonlyArray<readonly [number, number]> = [
    [3, 200],
    [2, 140],
    [1, 120],
    [0, 0],
  ];
  let message = '';
  for (const [maxReasons, maxOutput] of attempts) {
    message = renderSegments(findings, images, maxReasons, maxOutput).join('. ');
    if (message.length <= maxLength) return message;
  }
  return truncate(message, maxLength);
}

/**
 * A review that names more container images than MAX_IMAGES_PER_REVIEW: refused before any image is
 * parsed, looked up or scanned, so that its cost stays bounded whatever the pod holds. In warn mode it
 * is admitted with the same text as a warning, like every other finding. Pure.
 */
export function tooManyImages(count: number, maxImages: number, mode: 'enforce' | 'warn'): Decision {
  const message = `${MESSAGES.tooManyImages}: ${count} container images, the limit is ${maxImages} (MAX_IMAGES_PER_REVIEW)`;
  return mode === 'warn' ? { allowed: true, message, warnings: [message], findings: [] } : { allowed: false, message, warnings: [], findings: [] };
}

/**
 * The decision core: (images, local findings, scanner outcomes, policy) -> decision. Pure.
 */
export function decide(images: readonly ImageAssessment[], opts: DecisionOptions): Decision {
  const maxLength = opts.maxMessageLength ?? DEFAULT_MAX_MESSAGE_LENGTH;
  const findings = collectFindings(images, opts);
  const denying = findings.filter((f) => f.denies);
  const notDenying = findings.filter((f) => !f.denies);
  const warnings: string[] = [];
  if (opts.mode === 'warn') {
    const message = renderMessage(findings, images, maxLength);
    for (const segment of renderSegments(findings, images, 1, 120)) warnings.push(truncate(segment, MAX_WARNING_LENGTH));
    return { allowed: true, message, warnings, findings };
  }
  const why = opts.subject === 'workload' ? WORKLOAD_WITHOUT_VERDICT : 'admitted without a verdict (REJECT_IF_TIMEOUT=false)';
  for (const segment of renderSegments(notDenying, images, 1, 120)) {
    warnings.push(truncate(`${why}: ${segment}`, MAX_WARNING_LENGTH));
  }
  if (denying.length === 0) {
    return { allowed: true, message: notDenying.length > 0 ? warnings.join(' ') : '', warnings, findings };
  }
  return { allowed: false, message: renderMessage(denying, images, maxLength), warnings, findings };
}

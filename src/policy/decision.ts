import type {
  ContainerImage,
  Decision,
  DecisionOptions,
  Finding,
  ImageAssessment,
  ScanOutcome,
  StopReason,
} from './types.js';
import { ERROR_CODES } from '../errors.js';
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

/** A gate's or trigger's name as the scanner's policy language writes them; anything else is not shown. */
const POLICY_WORD = /^[A-Za-z0-9_.-]{1,64}$/;
const SEVERITY = /\b(CRITICAL|HIGH|MEDIUM|LOW|NEGLIGIBLE|UNKNOWN)\b/;
const VULNERABILITY_ID = /\b(CVE-\d{4}-\d{4,7}|GHSA(?:-[2-9cfghjmpqrvwx]{4}){3})\b/gi;
/** `… package type (java) - /path/to/struts2-core-2.3.12.jar (…`, `… in package openssl-1.1 - …`. */
const PACKAGE = /package(?: type \([A-Za-z0-9_.-]{1,32}\))?\s+(?:-\s+)?([^\s()]{1,512})/;
const PACKAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+:@~-]{0,127}$/;
/** How much of a stop row's text is read for its findings (it is the scanner's text, of any size). */
const MAX_FINDING_SCAN = 4096;

/**
 * A stop row as a denial shows it: the policy's gate and trigger, and the findings read from the
 * scanner's text (severity, vulnerability ids, package), in scangate's own words. The scanner's text
 * itself never reaches a denial, a warning or an event (docs/THREAT-MODEL.md, I4): it quotes the
 * tenant's image content (paths, package names) and whatever else the scanner chose to say.
 */
export function describeFinding(reason: StopReason): string {
  const gate = POLICY_WORD.test(reason.gate) ? reason.gate : 'unknown';
  const trigger = POLICY_WORD.test(reason.trigger) ? reason.trigger : 'unknown';
  const text = reason.output.slice(0, MAX_FINDING_SCAN);
  const parts: string[] = [];
  const severity = SEVERITY.exec(text)?.[1];
  if (severity !== undefined) parts.push(severity);
  const ids = [...new Set(Array.from(text.matchAll(VULNERABILITY_ID), (m) => (m[1] ?? '').toUpperCase()))].slice(0, 3);
  if (ids.length > 0) parts.push(ids.join(', '));
  const pkg = PACKAGE.exec(text)?.[1]?.split('/').pop();
  if (pkg !== undefined && PACKAGE_NAME.test(pkg) && !ids.includes(pkg.toUpperCase())) parts.push(`in ${pkg}`);
  return parts.length > 0 ? `${gate}/${trigger}: ${parts.join(' ')}` : `${gate}/${trigger}`;
}

export function describeReasons(reasons: readonly StopReason[], omitted: number, maxReasons: number, maxOutput: number): string {
  const total = reasons.length + omitted;
  if (maxReasons === 0 || reasons.length === 0) {
    return total === 0 ? '' : `${total} stop rule${total === 1 ? '' : 's'} triggered`;
  }
  const shown = reasons.slice(0, maxReasons).map((r) => (OWN_REASONS.has(r) ? `${r.gate}/${r.trigger}: ${r.output}` : truncate(describeFinding(r), maxOutput + 130)));
  const more = total - shown.length;
  return shown.join('; ') + (more > 0 ? `; +${more} more` : '');
}

const DEFERRED_DETAIL: Readonly<Record<'request' | 'namespace' | 'dry-run', (n: number) => string>> = {
  request: (n) => `this review already started ${n} new scans (MAX_NEW_SCANS_PER_REQUEST); a retry starts the next ones`,
  namespace: (n) => `this namespace already has ${n} scans in progress (MAX_SCANS_PER_NAMESPACE); a retry starts it once they finish`,
  'dry-run': () => 'a dry run starts no scan; a real request will',
};

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
        detail: DEFERRED_DETAIL[scan.why ?? 'request'](scan.maxNewScans),
        denies: missingVerdictDenies(opts),
      };
    case 'error':
      return {
        ...base,
        kind: scan.code === ERROR_CODES.scannerCircuitOpen ? 'scanner-unavailable' : 'scanner-error',
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
/** Reasons in scangate's own words (shown as they are), not the scanner's. */
const OWN_REASONS: ReadonlySet<StopReason> = new Set(ANALYSIS_FAILED);

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

/** The sentence prefix of each kind of finding, in the order a message gives them. */
const KIND_PREFIXES: ReadonlyArray<readonly [Finding['kind'], string]> = [
  ['invalid-reference', MESSAGES.invalidReference],
  ['latest-tag', MESSAGES.latestTag],
  ['registry-not-allowed', MESSAGES.registry],
  ['policy-fail', MESSAGES.policyFail],
  ['scan-timeout', MESSAGES.timeout],
  ['scan-deferred', MESSAGES.deferred],
  ['scanner-error', MESSAGES.scannerError],
  ['scanner-unavailable', MESSAGES.scannerUnavailable],
];

/** How the short forms of a message write each kind's images. */
interface NameStyle {
  /** The first image of each kind keeps its containers and detail (a policy failure: its first reason). */
  readonly firstDetail: boolean;
  /** The other images are followed by their containers. */
  readonly containers: boolean;
}

/** Each kind of finding with the text of each of its images in `style`, in the order a message gives them. */
function namedKinds(
  findings: readonly Finding[],
  images: readonly ImageAssessment[],
  style: NameStyle,
): Array<{ readonly prefix: string; readonly items: string[] }> {
  const reasons = reasonsByImage(images);
  const detailed = (f: Finding): string => {
    const rows = f.kind === 'policy-fail' ? reasons.get(f.image) : undefined;
    const detail = rows !== undefined ? describeReasons(rows.reasons, rows.omitted, 1, 120) : f.detail ? escapeControls(f.detail) : '';
    return `${displayImage(f.image)} (${describeContainers(f.containers)}${detail ? `: ${detail}` : ''})`;
  };
  return KIND_PREFIXES.flatMap(([kind, prefix]) => {
    const items = findings
      .filter((f) => f.kind === kind)
      .map((f, i) => {
        if (i === 0 && style.firstDetail) return detailed(f);
        return style.containers ? `${displayImage(f.image)} (${describeContainers(f.containers)})` : displayImage(f.image);
      });
    return items.length === 0 ? [] : [{ prefix, items }];
  });
}

/** One sentence per kind of finding naming every image in `style`. */
function renderNames(findings: readonly Finding[], images: readonly ImageAssessment[], style: NameStyle): string {
  return namedKinds(findings, images, style)
    .map((k) => `${k.prefix}: ${k.items.join(', ')}`)
    .join('. ');
}

/**
 * One sentence per kind of finding, naming as many images as `maxLength` allows and counting the
 * rest (`IMG, IMG, +N more`; `N images` when not even one name fits). Names are taken one per kind in
 * turn, in request order, so that no kind of problem is left unnamed while another lists dozens.
 * Undefined when not even the counts fit.
 */
function renderNamesCounted(findings: readonly Finding[], images: readonly ImageAssessment[], maxLength: number, firstDetail: boolean): string | undefined {
  const kinds = namedKinds(findings, images, { firstDetail, containers: false }).map((k) => ({ ...k, shown: 0, itemsLength: 0, full: false }));
  type Kind = (typeof kinds)[number];
  const sentence = (k: Kind): string => {
    const rest = k.items.length - k.shown;
    if (k.shown === 0) return `${k.prefix}: ${rest} image${rest === 1 ? '' : 's'}`;
    return `${k.prefix}: ${k.items.slice(0, k.shown).join(', ')}${rest > 0 ? `, +${rest} more` : ''}`;
  };
  // Lengths kept as running sums: a review may hold MAX_IMAGES_PER_REVIEW images, a setting.
  const sentenceLength = (k: Kind, shown: number, itemsLength: number): number => {
    const rest = k.items.length - shown;
    if (shown === 0) return `${k.prefix}: ${rest} image${rest === 1 ? '' : 's'}`.length;
    return k.prefix.length + 2 + itemsLength + 2 * (shown - 1) + (rest > 0 ? `, +${rest} more`.length : 0);
  };
  let total = kinds.reduce((sum, k) => sum + sentenceLength(k, 0, 0), 0) + 2 * (kinds.length - 1);
  if (total > maxLength) return undefined;
  for (let named = true; named; ) {
    named = false;
    for (const k of kinds) {
      if (k.full || k.shown === k.items.length) continue;
      const itemsLength = k.itemsLength + (k.items[k.shown]?.length ?? 0);
      const grown = total - sentenceLength(k, k.shown, k.itemsLength) + sentenceLength(k, k.shown + 1, itemsLength);
      if (grown > maxLength) {
        // In request order: a shorter name further on does not jump the queue.
        k.full = true;
        continue;
      }
      total = grown;
      k.shown += 1;
      k.itemsLength = itemsLength;
      named = true;
    }
  }
  return kinds.map(sentence).join('. ');
}

/**
 * Renders the findings into one message of at most `maxLength` characters (a Kubernetes event's note
 * holds 1 KB). What gives way, in order, until it fits: the scanner's reasons are shortened, then
 * counted (every other detail kept); then each kind of finding becomes one sentence that keeps the
 * detail of its first image only (a policy failure: its first reason) and names the others with their
 * containers, then without that detail, then by name alone; then as many images as fit are named, one
 * kind after another in turn, and the rest of each kind counted (`+N more`). Every offending image is
 * named or counted; the hard cut is left for a bound too small for even the counts.
 */
export function renderMessage(findings: readonly Finding[], images: readonly ImageAssessment[], maxLength: number): string {
  const attempts: ReadonlyArray<readonly [number, number]> = [
    [3, 200],
    [2, 140],
    [1, 120],
    [0, 0],
  ];
  for (const [maxReasons, maxOutput] of attempts) {
    const message = renderSegments(findings, images, maxReasons, maxOutput).join('. ');
    if (message.length <= maxLength) return message;
  }
  const styles: readonly NameStyle[] = [
    { firstDetail: true, containers: true },
    { firstDetail: false, containers: true },
    { firstDetail: true, containers: false },
    { firstDetail: false, containers: false },
  ];
  for (const style of styles) {
    const message = renderNames(findings, images, style);
    if (message.length <= maxLength) return message;
  }
  const counted = renderNamesCounted(findings, images, maxLength, true) ?? renderNamesCounted(findings, images, maxLength, false);
  return counted ?? truncate(renderNames(findings, images, { firstDetail: false, containers: false }), maxLength);
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

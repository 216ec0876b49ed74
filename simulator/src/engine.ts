/**
 * The simulator's state: known images, their analysis lifecycle, and policy checks. No HTTP and no
 * timers: the analysis status is computed from timestamps and the injected clock, so a test can
 * move time instead of sleeping.
 *
 * Lifecycle of an image, measured from its (re)submission with the current analysis delay D:
 * `not_analyzed` for the first quarter of D, `analyzing` for the rest, then `analyzed` (or
 * `analysis_failed` when an `analysisFailed` fault matches; `analyzing` for as long as a
 * `neverAnalyzed` fault matches). With D = 0 an image is analyzed as soon as it is submitted.
 * Changing D or the faults applies to analyses still in flight; a finished analysis keeps its
 * outcome. Submitting again is idempotent, except that
 * `force=true`, or a submission of an image whose analysis failed, restarts the analysis (as
 * Anchore re-queues it).
 */
import { createHash } from 'node:crypto';
import type { ResolvedSimulatorData, SimPolicy, SimVulnerability } from './data.js';
import { AnchoreApiError } from './errors.js';
import { FaultInjector } from './faults.js';
import { evaluatePolicy, isOsPackage, type PolicyOutcome } from './policy.js';
import { fulltagOf, parseSimImageRef, type SimImageRef } from './reference.js';

export type AnalysisStatus = 'not_analyzed' | 'analyzing' | 'analyzed' | 'analysis_failed';

export interface TagDetail {
  readonly fulltag: string;
  readonly registry: string;
  readonly repo: string;
  readonly repository: string;
  readonly tag: string;
  readonly addedAtMs: number;
}

interface ImageEntry {
  readonly digest: string;
  readonly imageId: string;
  readonly createdAtMs: number;
  analysisStartedAtMs: number;
  /** Set once the analysis is over and the faults or the delay change, so the outcome sticks. */
  finished: { status: 'analyzed' | 'analysis_failed'; atMs: number } | undefined;
  lastUpdatedMs: number;
  readonly tags: Map<string, TagDetail>;
  readonly vulnerabilities: readonly SimVulnerability[];
  annotations: Record<string, unknown>;
}

/** A snapshot of one image record. */
export interface ImageView {
  readonly digest: string;
  readonly imageId: string;
  readonly status: AnalysisStatus;
  readonly createdAtMs: number;
  readonly lastUpdatedMs: number;
  readonly analyzedAtMs: number | undefined;
  readonly tags: readonly TagDetail[];
  readonly annotations: Record<string, unknown>;
}

export interface SubmitRequest {
  /** A tag reference (its `tag` defaults to `latest`). */
  readonly ref: SimImageRef;
  /** Explicit manifest digest (sha256:...), when the caller pinned one. */
  readonly digest?: string | undefined;
  readonly annotations?: Record<string, unknown> | undefined;
}

export interface CheckResult {
  readonly digest: string;
  readonly imageId: string;
  readonly fulltag: string;
  readonly policy: SimPolicy;
  readonly outcome: PolicyOutcome;
  readonly evaluatedAtMs: number;
}

export type VulnerabilityType = 'all' | 'os' | 'non-os';

export interface EngineOptions {
  readonly data: ResolvedSimulatorData;
  readonly analysisDelayMs: number;
  readonly now: () => number;
  /** Named in Anchore's `no active policy` message. */
  readonly user: string;
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function own<T>(record: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

export class SimulatorEngine {
  private readonly data: ResolvedSimulatorData;
  private readonly now: () => number;
  private readonly user: string;
  private delayMs: number;
  private faultState: FaultInjector = new FaultInjector();
  private readonly byDigest = new Map<string, ImageEntry>();
  /** fulltag -> digest of the most recent submission of that tag. */
  private readonly latestByTag = new Map<string, string>();

  constructor(options: EngineOptions) {
    this.data = options.data;
    this.now = options.now;
    this.user = options.user;
    this.delayMs = SimulatorEngine.checkDelay(options.analysisDelayMs);
  }

  private static checkDelay(ms: number): number {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`analysisDelayMs must be a finite number >= 0, got ${String(ms)}`);
    return ms;
  }

  get analysisDelayMs(): number {
    return this.delayMs;
  }

  /** Applies to analyses in flight; finished ones keep their outcome. */
  setAnalysisDelayMs(ms: number): void {
    const checked = SimulatorEngine.checkDelay(ms);
    this.settleFinished();
    this.delayMs = checked;
  }

  /**
   * The analysis faults (analysisFailed, neverAnalyzed, noActivePolicy) come from here. They
   * apply to analyses in flight; finished ones keep their outcome (Anchore does not re-analyze).
   */
  setFaults(faults: FaultInjector): void {
    this.settleFinished();
    this.faultState = faults;
  }

  private settleFinished(): void {
    const now = this.now();
    for (const entry of this.byDigest.values()) {
      if (entry.finished !== undefined) continue;
      const status = this.statusOf(entry, now);
      if (status === 'analyzed' || status === 'analysis_failed') {
        entry.finished = { status, atMs: entry.analysisStartedAtMs + this.delayMs };
      }
    }
  }

  reset(): void {
    this.byDigest.clear();
    this.latestByTag.clear();
  }

  get imageCount(): number {
    return this.byDigest.size;
  }

  submit(request: SubmitRequest, force: boolean): ImageView {
    const ref = request.ref;
    const fulltag = fulltagOf(ref);
    const now = this.now();
    const known = this.latestByTag.get(fulltag);
    const fromData = this.lookupData(ref, request.digest);
    const digest = request.digest ?? known ?? fromData.digest ?? `sha256:${sha256Hex(fulltag)}`;

    let entry = this.byDigest.get(digest);
    if (entry === undefined) {
      entry = {
        digest,
        imageId: (fromData.digest === digest ? fromData.imageId : undefined) ?? sha256Hex(`imageId:${digest}`),
        createdAtMs: now,
        analysisStartedAtMs: now,
        finished: undefined,
        lastUpdatedMs: now,
        tags: new Map(),
        vulnerabilities: fromData.vulnerabilities,
        annotations: {},
      };
      this.byDigest.set(digest, entry);
    } else if (force || this.statusOf(entry, now) === 'analysis_failed') {
      entry.analysisStartedAtMs = now;
      entry.finished = undefined;
      entry.lastUpdatedMs = now;
    }
    if (!entry.tags.has(fulltag)) {
      entry.tags.set(fulltag, {
        fulltag,
        registry: ref.registry,
        repo: ref.repo,
        repository: ref.repository,
        tag: ref.tag ?? 'latest',
        addedAtMs: now,
      });
      entry.lastUpdatedMs = now;
    }
    if (request.annotations !== undefined) entry.annotations = { ...entry.annotations, ...request.annotations };
    this.latestByTag.set(fulltag, digest);
    return this.view(entry, now);
  }

  /** Throws 404 `cannot locate specified image` (Anchore's words for GET /images/{digest}). */
  getImage(digest: string): ImageView {
    const entry = this.byDigest.get(digest);
    if (entry === undefined) throw new AnchoreApiError(404, 'cannot locate specified image', { imageDigest: digest });
    return this.view(entry, this.now());
  }

  /** Without a tag: every image, oldest first. With one: the image the tag was last submitted as. */
  listImages(fulltag: string | undefined): ImageView[] {
    const now = this.now();
    if (fulltag === undefined) return [...this.byDigest.values()].map((e) => this.view(e, now));
    const parsed = parseSimImageRef(fulltag);
    const digest = this.latestByTag.get(parsed.ok ? fulltagOf(parsed.ref) : fulltag);
    const entry = digest === undefined ? undefined : this.byDigest.get(digest);
    return entry === undefined ? [] : [this.view(entry, now)];
  }

  /** The fulltags of a known image (for per-tag counters); empty for an unknown digest. */
  tagsOf(digest: string): string[] {
    return [...(this.byDigest.get(digest)?.tags.keys() ?? [])];
  }

  check(digest: string, tag: string, policyId: string | undefined): CheckResult {
    const entry = this.analyzedEntry(digest);
    const policy = this.policyFor(policyId);
    const parsed = parseSimImageRef(tag);
    if (!parsed.ok) throw new AnchoreApiError(400, `invalid tag: ${parsed.error}`, { tag });
    const fulltag = fulltagOf(parsed.ref);
    // Anchore evaluates a digest for any tag of the same repository, even one never submitted.
    const sameRepository = [...entry.tags.values()].some((t) => t.repository === parsed.ref.repository);
    if (!entry.tags.has(fulltag) && !sameRepository) {
      throw new AnchoreApiError(404, 'could not find any evaluations for input images', { imageDigest: digest, tag: fulltag });
    }
    return {
      digest,
      imageId: entry.imageId,
      fulltag,
      policy,
      outcome: evaluatePolicy(entry.vulnerabilities, policy),
      evaluatedAtMs: this.finishedAt(entry),
    };
  }

  vulnerabilities(digest: string, type: VulnerabilityType): { imageId: string; vulnerabilities: SimVulnerability[] } {
    const entry = this.analyzedEntry(digest);
    const vulnerabilities = entry.vulnerabilities.filter((v) =>
      type === 'all' ? true : type === 'os' ? isOsPackage(v) : !isOsPackage(v),
    );
    return { imageId: entry.imageId, vulnerabilities };
  }

  private analyzedEntry(digest: string): ImageEntry {
    const entry = this.byDigest.get(digest);
    if (entry === undefined) throw new AnchoreApiError(404, 'image not found in DB', { imageDigest: digest });
    const status = this.statusOf(entry, this.now());
    if (status !== 'analyzed') throw new AnchoreApiError(404, `image is not analyzed - analysis_status: ${status}`, {});
    return entry;
  }

  private policyFor(policyId: string | undefined): SimPolicy {
    const id = policyId ?? (this.faultState.noActivePolicy ? undefined : this.data.activePolicyId);
    const policy = id === undefined ? undefined : this.data.policies.find((p) => p.id === id);
    if (policy === undefined) {
      throw policyId === undefined
        ? new AnchoreApiError(404, `user has no active policy to evaluate: ${this.user}`, {})
        : new AnchoreApiError(404, `policy bundle not found: ${policyId}`, { policyId });
    }
    return policy;
  }

  private finishedAt(entry: ImageEntry): number {
    return entry.finished?.atMs ?? entry.analysisStartedAtMs + this.delayMs;
  }

  private statusOf(entry: ImageEntry, now: number): AnalysisStatus {
    if (entry.finished !== undefined) return entry.finished.status;
    const elapsed = now - entry.analysisStartedAtMs;
    const delay = this.delayMs;
    const images = entry.tags.values();
    if (this.faultState.neverAnalyzed.matches(images)) return elapsed < delay / 4 ? 'not_analyzed' : 'analyzing';
    if (elapsed >= delay) return this.faultState.analysisFailed.matches(entry.tags.values()) ? 'analysis_failed' : 'analyzed';
    return elapsed < delay / 4 ? 'not_analyzed' : 'analyzing';
  }

  private view(entry: ImageEntry, now: number): ImageView {
    const status = this.statusOf(entry, now);
    return {
      digest: entry.digest,
      imageId: entry.imageId,
      status,
      createdAtMs: entry.createdAtMs,
      lastUpdatedMs: Math.max(entry.lastUpdatedMs, status === 'analyzed' || status === 'analysis_failed' ? this.finishedAt(entry) : 0),
      analyzedAtMs: status === 'analyzed' ? this.finishedAt(entry) : undefined,
      tags: [...entry.tags.values()],
      annotations: entry.annotations,
    };
  }

  /** What the data file says about a repository/tag (or a digest listed under that repository). */
  private lookupData(
    ref: SimImageRef,
    digest: string | undefined,
  ): { digest: string | undefined; imageId: string | undefined; vulnerabilities: readonly SimVulnerability[] } {
    const repo = own(this.data.repositories, ref.repository);
    if (repo === undefined) return { digest: undefined, imageId: undefined, vulnerabilities: this.data.defaultVulnerabilities };
    const byDigest = digest === undefined ? undefined : Object.values(repo.tags).find((t) => t.digest === digest);
    const tagEntry = byDigest ?? own(repo.tags, ref.tag ?? 'latest');
    return {
      digest: tagEntry?.digest,
      imageId: tagEntry?.imageId,
      vulnerabilities: tagEntry?.vulnerabilities ?? repo.vulnerabilities,
    };
  }
}

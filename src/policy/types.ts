import type { ImageReference } from '../reference/parse-reference.js';

export type ContainerKind = 'container' | 'initContainer' | 'ephemeralContainer' | 'imageVolume';

/** One container's image as the request wrote it. */
export interface ContainerImage {
  readonly container: string;
  readonly kind: ContainerKind;
  readonly image: string;
  /** The workload whose pod template holds the container (absent for a pod): named in messages. */
  readonly workload?: { readonly kind: string; readonly name?: string };
}

/** A stop row of the scanner's policy evaluation: why an image failed. */
export interface StopReason {
  readonly gate: string;
  readonly trigger: string;
  readonly output: string;
}

/**
 * The scanner's answer for one image. Cached. `digest` is the manifest the scanner analysed (one
 * platform); `pinDigest`, when the scanner reports a different one, is the manifest list that tag
 * points at (Anchore's parentDigest / parent_digest): the digest to pin a pod to, so that nodes of
 * every architecture can still pull it.
 */
export type ScanVerdict =
  | { readonly status: 'pass'; readonly digest: string; readonly pinDigest?: string; readonly policyId?: string; readonly warnings: number }
  | {
      readonly status: 'fail';
      readonly digest: string;
      readonly pinDigest?: string;
      readonly policyId?: string;
      /** The first stop rows only (what a denial can show), each shortened: see engine/slim-verdict.ts. */
      readonly reasons: readonly StopReason[];
      /** How many more stop rows the scanner returned than `reasons` keeps. */
      readonly omittedReasons?: number;
      /** 'policy': stop rows; 'analysis_failed': the scanner could not analyse the image. */
      readonly cause: 'policy' | 'analysis_failed';
    };

/** What asking for a verdict produced within the request's deadline. Never cached except `verdict`. */
export type ScanOutcome =
  | { readonly kind: 'verdict'; readonly verdict: ScanVerdict }
  | { readonly kind: 'timeout'; readonly waitedMs: number }
  /**
   * Not scanned: the request had already started as many new scans as one request may, or its namespace
   * holds as many scans as one namespace may (fairness), or it is a dry run (which starts none).
   */
  | { readonly kind: 'deferred'; readonly maxNewScans: number; readonly why?: 'request' | 'namespace' | 'dry-run' }
  | { readonly kind: 'error'; readonly code: string; readonly message: string };

/** Local rules, applied before any scan. */
export interface LocalRules {
  readonly denyLatestTag: boolean;
  /** Normalised registry hosts; empty = every registry is allowed. */
  readonly registryAllowlist: readonly string[];
}

export type Mode = 'enforce' | 'warn';

export interface DecisionOptions {
  readonly mode: Mode;
  /** Deny (true) or admit (false) when a verdict is missing because of a timeout or a scanner error. */
  readonly rejectIfTimeout: boolean;
  /**
   * 'pod' (default): the enforcement point. 'workload': a pod template at apply time, where a missing
   * verdict never denies (the pods are checked when they are created) and is a warning instead.
   */
  readonly subject?: 'pod' | 'workload';
  /** Upper bound of the whole message, so a Kubernetes event stays readable. */
  readonly maxMessageLength?: number;
}

export type LocalFinding =
  | { readonly kind: 'invalid-reference'; readonly error: string }
  | { readonly kind: 'latest-tag' }
  | { readonly kind: 'registry-not-allowed'; readonly registry: string };

/** Everything known about one distinct image of the request. */
export interface ImageAssessment {
  readonly image: string;
  /** Every container that uses this image (an image used twice is judged once). */
  readonly containers: readonly ContainerImage[];
  readonly reference?: ImageReference;
  readonly local?: LocalFinding;
  /** Absent when a local rule already decided, or the image was never sent to the scanner. */
  readonly scan?: ScanOutcome;
}

export type FindingKind =
  | LocalFinding['kind']
  | 'policy-fail'
  | 'scan-timeout'
  | 'scan-deferred'
  | 'scanner-error'
  | 'scanner-unavailable';

export interface Finding {
  readonly kind: FindingKind;
  readonly image: string;
  readonly containers: readonly ContainerImage[];
  readonly detail: string;
  /** Whether this finding, on its own, denies the request in enforce mode. */
  readonly denies: boolean;
}

export interface Decision {
  readonly allowed: boolean;
  /** Every offending image with its reason, one sentence per kind; empty when allowed cleanly. */
  readonly message: string;
  readonly warnings: readonly string[];
  readonly findings: readonly Finding[];
  /** Set when the request carried a break-glass annotation (policy/break-glass.ts). */
  readonly breakGlass?: 'admitted' | 'not_needed' | 'refused' | 'ineffective';
}

/**
 * Leader election on a coordination.k8s.io/v1 Lease, so that one replica runs the re-verification
 * loop (README, "Re-verification"). The algorithm is client-go's leaderelection: a lease is held
 * while its holder renews it; another replica takes it once it has seen the same record unchanged for
 * the lease duration, measured on its own monotonic clock (never by comparing its wall clock with the
 * holder's renewTime, so clock skew between nodes does not matter); every write names the
 * resourceVersion it read, so two replicas cannot both win. A holder that cannot renew within
 * renewDeadline (shorter than the lease duration) stops leading before anyone else may start.
 *
 * The API is behind LeaseApi (kube/recheck-kube.ts on @kubernetes/client-node; a fake in the tests).
 */
import type { Logger } from 'pino';
import { KubeApiError, describeError } from '../errors.js';

export interface LeaseRecord {
  readonly holderIdentity: string;
  readonly leaseDurationSeconds: number;
  /** Wall-clock ms since the epoch. */
  readonly acquireTimeMs: number;
  readonly renewTimeMs: number;
  readonly leaseTransitions: number;
}

export interface StoredLease {
  readonly record: LeaseRecord;
  readonly resourceVersion: string;
}

/**
 * The Lease, read and written. Rejects with KubeApiError; status 409 when another replica wrote first
 * (the Lease already exists, or its resourceVersion moved on).
 */
export interface LeaseApi {
  /** Undefined when there is no such Lease (404). */
  get(signal: AbortSignal): Promise<StoredLease | undefined>;
  create(record: LeaseRecord, signal: AbortSignal): Promise<StoredLease>;
  update(record: LeaseRecord, resourceVersion: string, signal: AbortSignal): Promise<StoredLease>;
}

export interface ElectionClock {
  /** Monotonic ms. */
  now(): number;
  /** Wall-clock ms since the epoch (the Lease's times). */
  wallNow(): number;
  setTimer(fn: () => void, ms: number): { cancel(): void };
}

export interface LeaderElectorOptions {
  readonly api: LeaseApi;
  /** This replica's name in holderIdentity (the pod name plus a random suffix). */
  readonly identity: string;
  readonly leaseDurationMs: number;
  /** A leader that has not renewed for this long stops leading; less than leaseDurationMs. */
  readonly renewDeadlineMs: number;
  /** How often the leader renews and the others try. */
  readonly retryPeriodMs: number;
  readonly clock: ElectionClock;
  readonly onStartedLeading: () => void;
  readonly onStoppedLeading: () => void;
  readonly logger: Logger;
}

export interface LeaderElector {
  start(): void;
  /** Stops trying; a leader releases the Lease (another replica takes it at its next try). */
  stop(): Promise<void>;
  /** One acquire-or-renew round (the timer calls it; tests call it directly). */
  tryAcquireOrRenew(): Promise<boolean>;
  readonly isLeader: boolean;
}

export function createLeaderElector(opts: LeaderElectorOptions): LeaderElector {
  const { clock } = opts;
  let leader = false;
  let stopped = true;
  let timer: { cancel(): void } | undefined;
  /** The record last read and when (monotonic) it was first seen as it is. */
  let observed: { record: LeaseRecord; resourceVersion: string; at: number } | undefined;
  /** Monotonic ms of the last successful renewal as leader. */
  let renewedAt = -Infinity;
  let round: Promise<boolean> | undefined;

  const durationSeconds = Math.max(1, Math.round(opts.leaseDurationMs / 1000));

  const setLeader = (value: boolean): void => {
    if (value === leader) return;
    leader = value;
    opts.logger.info({ identity: opts.identity, leader: value }, value ? 'took the re-check lease' : 'no longer holds the re-check lease');
    if (value) opts.onStartedLeading();
    else opts.onStoppedLeading();
  };

  const withTimeout = async <T>(call: (signal: AbortSignal) => Promise<T>): Promise<T> => {
    const controller = new AbortController();
    const t = clock.setTimer(() => {
      controller.abort();
    }, opts.retryPeriodMs);
    try {
      return await call(controller.signal);
    } finally {
      t.cancel();
    }
  };

  const sameRecord = (a: LeaseRecord, b: LeaseRecord): boolean =>
    a.holderIdentity === b.holderIdentity && a.renewTimeMs === b.renewTimeMs && a.leaseTransitions === b.leaseTransitions;

  async function attempt(): Promise<boolean> {
    const now = clock.now();
    const wall = clock.wallNow();
    const mine: LeaseRecord = {
      holderIdentity: opts.identity,
      leaseDurationSeconds: durationSeconds,
      acquireTimeMs: wall,
      renewTimeMs: wall,
      leaseTransitions: 0,
    };
    const current = await withTimeout((signal) => opts.api.get(signal));
    if (current === undefined) {
      const created = await withTimeout((signal) => opts.api.create(mine, signal));
      observed = { ...created, at: now };
      return true;
    }
    if (observed === undefined || !sameRecord(observed.record, current.record)) observed = { ...current, at: now };
    const held = current.record;
    const heldByMe = held.holderIdentity === opts.identity;
    const expired = held.holderIdentity === '' || observed.at + held.leaseDurationSeconds * 1000 <= now;
    if (!heldByMe && !expired) return false;
    const next: LeaseRecord = heldByMe
      ? { ...held, leaseDurationSeconds: durationSeconds, renewTimeMs: wall }
      : { ...mine, leaseTransitions: held.leaseTransitions + 1 };
    const updated = await withTimeout((signal) => opts.api.update(next, current.resourceVersion, signal));
    observed = { ...updated, at: now };
    return true;
  }

  async function tryAcquireOrRenew(): Promise<boolean> {
    let won = false;
    try {
      won = await attempt();
    } catch (error) {
      // A conflict is another replica winning the same round: not worth a warning.
      if (!(error instanceof KubeApiError && error.status === 409)) {
        opts.logger.warn({ err: describeError(error), identity: opts.identity }, 're-check lease: API call failed');
      }
    }
    if (won) renewedAt = clock.now();
    // A leader that failed to renew keeps leading until renewDeadline, then steps down, before the
    // lease duration lets another replica take over.
    if (won) setLeader(true);
    else if (leader && (clock.now() - renewedAt >= opts.renewDeadlineMs || observed?.record.holderIdentity !== opts.identity)) setLeader(false);
    return leader;
  }

  const schedule = (): void => {
    if (stopped) return;
    timer = clock.setTimer(() => {
      timer = undefined;
      round = tryAcquireOrRenew().finally(() => {
        round = undefined;
        schedule();
      });
    }, opts.retryPeriodMs);
  };

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      round = tryAcquireOrRenew().finally(() => {
        round = undefined;
        schedule();
      });
    },
    async stop() {
      stopped = true;
      timer?.cancel();
      timer = undefined;
      if (round !== undefined) await round.catch(() => false);
      if (!leader) return;
      setLeader(false);
      // Released as client-go's ReleaseOnCancel does: an empty holder that anyone may take at once.
      const held = observed;
      if (held === undefined) return;
      try {
        await withTimeout((signal) =>
          opts.api.update({ ...held.record, holderIdentity: '', leaseDurationSeconds: 1, renewTimeMs: clock.wallNow() }, held.resourceVersion, signal),
        );
      } catch (error) {
        opts.logger.warn({ err: describeError(error) }, 're-check lease: release failed (another replica takes it when it expires)');
      }
    },
    tryAcquireOrRenew,
    get isLeader() {
      return leader;
    },
  };
}

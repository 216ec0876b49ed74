import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { beforeEach, describe, it } from 'node:test';
import { resolveSimulatorData, type SimulatorData } from '@scangate/simulator/internal/data';
import { SimulatorEngine, type SubmitRequest } from '@scangate/simulator/internal/engine';
import { AnchoreApiError } from '@scangate/simulator/internal/errors';
import { FaultInjector } from '@scangate/simulator/internal/faults';
import { parseSimImageRef } from '@scangate/simulator/internal/reference';

const NGINX_DIGEST = `sha256:${'1'.repeat(64)}`;
const PINNED = `sha256:${'2'.repeat(64)}`;

const data: SimulatorData = {
  policies: [
    { id: 'default', name: 'default', active: true },
    { id: 'strict', name: 'strict', stopSeverities: ['Critical', 'High', 'Medium'], warnSeverities: [] },
  ],
  defaults: { vulnerabilities: [{ vuln: 'CVE-0000-1', severity: 'Low', package: 'base-1' }] },
  repositories: {
    'docker.io/library/nginx': {
      tags: { '1.25.3': { digest: NGINX_DIGEST, imageId: 'f'.repeat(64) } },
      vulnerabilities: [{ vuln: 'CVE-2023-1', severity: 'Medium', package: 'libssl-3' }],
    },
    'docker.io/library/python': {
      tags: {
        '3.6': { digest: PINNED, vulnerabilities: [{ vuln: 'CVE-2021-3177', severity: 'High', package: 'python-3.6' }] },
        '3.12': { vulnerabilities: [] },
      },
    },
  },
};

function request(tag: string, digest?: string): SubmitRequest {
  const parsed = parseSimImageRef(tag);
  if (!parsed.ok) throw new Error(parsed.error);
  return { ref: { ...parsed.ref, tag: parsed.ref.tag ?? 'latest' }, digest };
}

function apiError(status: number, message: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof AnchoreApiError, `expected AnchoreApiError, got ${String(err)}`);
    assert.equal(err.httpcode, status);
    assert.match(err.message, message);
    return true;
  };
}

describe('simulator engine', () => {
  let now: number;
  let engine: SimulatorEngine;
  beforeEach(() => {
    now = 1_700_000_000_000;
    engine = new SimulatorEngine({ data: resolveSimulatorData(data), analysisDelayMs: 1000, now: () => now, user: 'admin' });
  });

  it('moves not_analyzed -> analyzing -> analyzed with the clock', () => {
    const first = engine.submit(request('nginx:1.25.3'), false);
    assert.equal(first.status, 'not_analyzed');
    assert.equal(first.digest, NGINX_DIGEST);
    assert.equal(first.imageId, 'f'.repeat(64));
    now += 300;
    assert.equal(engine.getImage(NGINX_DIGEST).status, 'analyzing');
    assert.throws(() => engine.check(NGINX_DIGEST, 'docker.io/library/nginx:1.25.3', undefined), apiError(404, /^image is not analyzed - analysis_status: analyzing$/));
    assert.throws(() => engine.vulnerabilities(NGINX_DIGEST, 'all'), apiError(404, /not analyzed/));
    now += 700;
    const done = engine.getImage(NGINX_DIGEST);
    assert.equal(done.status, 'analyzed');
    assert.equal(done.analyzedAtMs, 1_700_000_001_000);
  });

  it('is idempotent and keeps the analysis clock on resubmission', () => {
    engine.submit(request('nginx:1.25.3'), false);
    now += 600;
    const again = engine.submit(request('docker.io/library/nginx:1.25.3'), false);
    assert.equal(again.digest, NGINX_DIGEST);
    assert.equal(again.status, 'analyzing');
    assert.equal(again.tags.length, 1);
    now += 400;
    assert.equal(engine.submit(request('nginx:1.25.3'), false).status, 'analyzed');
    assert.equal(engine.imageCount, 1);
  });

  it('force=true restarts the analysis', () => {
    engine.submit(request('nginx:1.25.3'), false);
    now += 2000;
    assert.equal(engine.submit(request('nginx:1.25.3'), true).status, 'not_analyzed');
  });

  it('derives digests for unknown images, uses pinned digests, adds tags to known digests', () => {
    const unknown = engine.submit(request('quay.io/org/app:v1'), false);
    assert.equal(unknown.digest, `sha256:${createHash('sha256').update('quay.io/org/app:v1').digest('hex')}`);
    const pinned = engine.submit(request('quay.io/org/app:v2', PINNED), false);
    assert.equal(pinned.digest, PINNED);
    // A second tag for the same digest joins the record.
    const latest = engine.submit(request('quay.io/org/app:latest', PINNED), false);
    assert.deepEqual(
      latest.tags.map((t) => t.fulltag),
      ['quay.io/org/app:v2', 'quay.io/org/app:latest'],
    );
    assert.deepEqual(
      engine.listImages('quay.io/org/app:latest').map((v) => v.digest),
      [PINNED],
    );
    assert.deepEqual(engine.listImages('quay.io/org/app:none'), []);
    assert.equal(engine.listImages(undefined).length, 2);
  });

  it('evaluates the active policy, a named policy, and refuses an unknown one', () => {
    engine.setAnalysisDelayMs(0);
    engine.submit(request('nginx:1.25.3'), false);
    const def = engine.check(NGINX_DIGEST, 'nginx:1.25.3', undefined);
    assert.equal(def.fulltag, 'docker.io/library/nginx:1.25.3');
    assert.equal(def.policy.id, 'default');
    assert.equal(def.outcome.finalAction, 'warn');
    assert.equal(def.outcome.status, 'pass');
    assert.equal(engine.check(NGINX_DIGEST, 'nginx:1.25.3', 'strict').outcome.status, 'fail');
    assert.throws(() => engine.check(NGINX_DIGEST, 'nginx:1.25.3', 'nope'), apiError(404, /policy bundle not found: nope/));
  });

  it('answers for another tag of the same repository but not for another repository', () => {
    engine.setAnalysisDelayMs(0);
    engine.submit(request('nginx:1.25.3'), false);
    assert.equal(engine.check(NGINX_DIGEST, 'docker.io/library/nginx:stable', undefined).fulltag, 'docker.io/library/nginx:stable');
    assert.throws(() => engine.check(NGINX_DIGEST, 'docker.io/bitnami/nginx:1.25.3', undefined), apiError(404, /could not find any evaluations/));
    assert.throws(() => engine.check(NGINX_DIGEST, 'Bad Tag', undefined), apiError(400, /invalid tag/));
    assert.throws(() => engine.check(PINNED, 'python:3.6', undefined), apiError(404, /image not found/));
    assert.throws(() => engine.getImage(PINNED), apiError(404, /cannot locate specified image/));
  });

  it('takes vulnerabilities from the tag, the digest, the repository or the defaults', () => {
    engine.setAnalysisDelayMs(0);
    const vulnsOf = (tag: string, digest?: string): string[] => {
      const view = engine.submit(request(tag, digest), false);
      return engine.vulnerabilities(view.digest, 'all').vulnerabilities.map((v) => v.vuln);
    };
    assert.deepEqual(vulnsOf('python:3.6'), ['CVE-2021-3177']);
    assert.deepEqual(vulnsOf('python:3.12'), []);
    assert.deepEqual(vulnsOf('python:latest'), []);
    assert.deepEqual(vulnsOf('nginx:mainline'), ['CVE-2023-1']);
    assert.deepEqual(vulnsOf('redis:7'), ['CVE-0000-1']);
    // A digest-pinned pod with a synthetic tag still finds the data of the digest.
    engine.reset();
    assert.deepEqual(vulnsOf('python:synthetic', PINNED), ['CVE-2021-3177']);
    assert.equal(engine.check(PINNED, 'python:synthetic', undefined).outcome.status, 'fail');
  });

  it('filters os and non-os vulnerabilities', () => {
    const engine2 = new SimulatorEngine({
      data: resolveSimulatorData({
        repositories: {
          'docker.io/library/app': {
            vulnerabilities: [
              { vuln: 'CVE-1', severity: 'High', package: 'libc-1', packageType: 'dpkg' },
              { vuln: 'CVE-2', severity: 'High', package: 'log4j-core-2', packageType: 'java' },
            ],
          },
        },
      }),
      analysisDelayMs: 0,
      now: () => now,
      user: 'admin',
    });
    const view = engine2.submit(request('app:1'), false);
    assert.deepEqual(
      engine2.vulnerabilities(view.digest, 'os').vulnerabilities.map((v) => v.vuln),
      ['CVE-1'],
    );
    assert.deepEqual(
      engine2.vulnerabilities(view.digest, 'non-os').vulnerabilities.map((v) => v.vuln),
      ['CVE-2'],
    );
  });

  describe('analysis faults', () => {
    it('analysisFailed ends in analysis_failed; resubmitting restarts the analysis', () => {
      engine.setFaults(new FaultInjector({ analysisFailed: ['docker.io/library/nginx'] }));
      engine.submit(request('nginx:1.25.3'), false);
      now += 999;
      assert.equal(engine.getImage(NGINX_DIGEST).status, 'analyzing');
      now += 1;
      assert.equal(engine.getImage(NGINX_DIGEST).status, 'analysis_failed');
      assert.throws(() => engine.check(NGINX_DIGEST, 'nginx:1.25.3', undefined), apiError(404, /analysis_status: analysis_failed/));
      engine.setFaults(new FaultInjector());
      assert.equal(engine.submit(request('nginx:1.25.3'), false).status, 'not_analyzed');
      now += 1000;
      assert.equal(engine.getImage(NGINX_DIGEST).status, 'analyzed');
    });

    it('neverAnalyzed stays analyzing', () => {
      engine.setFaults(new FaultInjector({ neverAnalyzed: ['docker.io/library/nginx:1.25.3'] }));
      engine.submit(request('nginx:1.25.3'), false);
      now += 10_000_000;
      assert.equal(engine.getImage(NGINX_DIGEST).status, 'analyzing');
      assert.throws(() => engine.check(NGINX_DIGEST, 'nginx:1.25.3', undefined), apiError(404, /analysis_status: analyzing/));
    });

    it('noActivePolicy refuses checks without a policyId', () => {
      engine.setAnalysisDelayMs(0);
      engine.submit(request('nginx:1.25.3'), false);
      engine.setFaults(new FaultInjector({ noActivePolicy: true }));
      assert.throws(() => engine.check(NGINX_DIGEST, 'nginx:1.25.3', undefined), apiError(404, /^user has no active policy to evaluate: admin$/));
      assert.equal(engine.check(NGINX_DIGEST, 'nginx:1.25.3', 'default').policy.id, 'default');
    });
  });

  it('keeps finished analyses when the delay or the faults change', () => {
    engine.submit(request('nginx:1.25.3'), false);
    now += 1000;
    engine.setAnalysisDelayMs(60_000);
    assert.equal(engine.getImage(NGINX_DIGEST).status, 'analyzed');
    engine.setFaults(new FaultInjector({ analysisFailed: ['nginx'] }));
    assert.equal(engine.getImage(NGINX_DIGEST).status, 'analyzed');
    // ...while an analysis in flight follows the new delay.
    const py = engine.submit(request('python:3.6'), false);
    now += 30_000;
    assert.equal(engine.getImage(py.digest).status, 'analyzing');
    engine.setAnalysisDelayMs(0);
    assert.equal(engine.getImage(py.digest).status, 'analyzed');
  });

  it('clearing neverAnalyzed lets a stuck analysis finish', () => {
    engine.setFaults(new FaultInjector({ neverAnalyzed: ['nginx'] }));
    engine.submit(request('nginx:1.25.3'), false);
    now += 5000;
    assert.equal(engine.getImage(NGINX_DIGEST).status, 'analyzing');
    engine.setFaults(new FaultInjector());
    assert.equal(engine.getImage(NGINX_DIGEST).status, 'analyzed');
  });

  it('rejects a negative analysis delay', () => {
    assert.throws(() => engine.setAnalysisDelayMs(-1), RangeError);
    assert.throws(() => engine.setAnalysisDelayMs(Number.NaN), RangeError);
  });
});

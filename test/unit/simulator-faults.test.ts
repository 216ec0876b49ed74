import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SimulatorConfigError } from '@scangate/simulator/internal/errors';
import { FaultInjector, ImageMatcher, parseFaultConfig } from '@scangate/simulator/internal/faults';

const image = (fulltag: string, repository: string) => ({ fulltag, repository });

describe('simulator faults', () => {
  it('does nothing without a config', () => {
    const f = new FaultInjector();
    assert.deepEqual(f.decide('addImage'), { latencyMs: 0, fault: undefined });
  });

  it('picks hang over status over malformed over wrongShape', () => {
    const all = { hang: true, status: 503, malformed: true, wrongShape: true };
    assert.deepEqual(new FaultInjector(all).decide('check').fault, { kind: 'hang' });
    assert.deepEqual(new FaultInjector({ ...all, hang: false }).decide('check').fault, { kind: 'status', status: 503 });
    assert.deepEqual(new FaultInjector({ malformed: true, wrongShape: true }).decide('check').fault, { kind: 'malformed' });
    assert.deepEqual(new FaultInjector({ wrongShape: true }).decide('check').fault, { kind: 'wrongShape' });
  });

  it('carries Retry-After and latency', () => {
    assert.deepEqual(new FaultInjector({ status: 429, retryAfterSeconds: 3, latencyMs: 50 }).decide('vuln'), {
      latencyMs: 50,
      fault: { kind: 'status', status: 429, retryAfterSeconds: 3 },
    });
  });

  it('limits faults to the first `times` matching calls', () => {
    const f = new FaultInjector({ status: 500, times: 2, operations: ['check'] });
    const kinds = ['addImage', 'check', 'getImage', 'check', 'check', 'check'].map(
      (op) => f.decide(op as 'addImage').fault?.kind ?? 'none',
    );
    assert.deepEqual(kinds, ['none', 'status', 'none', 'status', 'none', 'none']);
  });

  it('times: 0 disables the transport faults', () => {
    assert.equal(new FaultInjector({ hang: true, times: 0 }).decide('check').fault, undefined);
  });

  it('latency alone applies to matching operations only', () => {
    const f = new FaultInjector({ latencyMs: 20, operations: ['addImage'] });
    assert.equal(f.decide('addImage').latencyMs, 20);
    assert.equal(f.decide('other').latencyMs, 0);
  });

  it('rejects invalid configs listing every problem', () => {
    let caught: unknown;
    try {
      parseFaultConfig({ status: 42, times: -1, operations: ['delete'], hang: 'yes', nope: true });
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof SimulatorConfigError);
    const text = caught.problems.join('\n');
    for (const field of ['status', 'times', 'operations.0', 'hang', 'nope']) assert.match(text, new RegExp(field.replace('.', '\\.')));
    assert.throws(() => new FaultInjector({ latencyMs: -5 }), SimulatorConfigError);
  });

  it('matches images by repository or fulltag, normalising short names', () => {
    const m = new ImageMatcher(['nginx', 'quay.io/org/app:v1']);
    assert.equal(m.matches([image('docker.io/library/nginx:1.25.3', 'docker.io/library/nginx')]), true);
    assert.equal(m.matches([image('quay.io/org/app:v1', 'quay.io/org/app')]), true);
    assert.equal(m.matches([image('quay.io/org/app:v2', 'quay.io/org/app')]), false);
    assert.equal(m.matches([image('docker.io/bitnami/nginx:1', 'docker.io/bitnami/nginx')]), false);
    assert.equal(new ImageMatcher().matches([image('docker.io/library/nginx:1', 'docker.io/library/nginx')]), false);
  });
});

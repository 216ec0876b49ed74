/**
 * The admission codec beyond pod creations: pod UPDATEs judge the images that change (issue 7 §1) and
 * workload controllers' pod templates decode into the same internal model (issue 10 §1).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { changedImages, decodeAdmissionReview, imagesToJudge } from '../../src/admission/admission-review.js';
import { BadRequestError } from '../../src/errors.js';
import type { ContainerImage } from '../../src/policy/types.js';
import { judgedShape } from '../helpers/review-shape.js';
import { podUpdateReview, reviewOf, WORKLOAD_TYPES, workloadObject, workloadReview, type WorkloadKindName } from '../helpers/workload-review.js';

const judge = (body: Record<string, unknown>) => judgedShape(imagesToJudge(decodeAdmissionReview(body))) as { images: unknown; name?: unknown } | undefined;
const c = (container: string, image: string, kind: ContainerImage['kind'] = 'container'): ContainerImage => ({ container, kind, image });

describe('pod UPDATE: the images that differ from oldObject', () => {
  const web = { name: 'web', image: 'nginx:1.25.3' };
  const init = { name: 'setup', image: 'busybox:1.36' };

  test('kubectl set image: the changed container is judged, the others are not', () => {
    const review = judge(
      podUpdateReview('web', { containers: [{ name: 'web', image: 'kaizheh/apache-struts2-cve-2017-5638:2.3.12' }, { name: 'log', image: 'fluent-bit:3' }] }, { containers: [web, { name: 'log', image: 'fluent-bit:3' }] }).body,
    );
    assert.deepEqual(review, { kind: 'Pod', name: 'web', images: [c('web', 'kaizheh/apache-struts2-cve-2017-5638:2.3.12')] });
  });

  test('an init container image change is judged as an init container', () => {
    const review = judge(podUpdateReview('web', { initContainers: [{ name: 'setup', image: 'busybox' }], containers: [web] }, { initContainers: [init], containers: [web] }).body);
    assert.deepEqual(review?.images, [c('setup', 'busybox', 'initContainer')]);
  });

  test('an UPDATE that changes no image (labels, annotations, finalizers) has nothing to judge', () => {
    const review = judge(podUpdateReview('web', { initContainers: [init], containers: [web] }, { initContainers: [init], containers: [web] }).body);
    assert.deepEqual(review, { kind: 'Pod', name: 'web', images: [] });
  });

  test('ways around a diff by image text are each judged', () => {
    const cases: Array<[string, Parameters<typeof podUpdateReview>[1], Parameters<typeof podUpdateReview>[2], ContainerImage[]]> = [
      // Two containers swap images: both run something they did not run before.
      ['swap', { containers: [{ name: 'a', image: 'x:1' }, { name: 'b', image: 'y:1' }] }, { containers: [{ name: 'a', image: 'y:1' }, { name: 'b', image: 'x:1' }] }, [c('a', 'x:1'), c('b', 'y:1')]],
      // An image from an init container moves into the main container (kind differs).
      ['init to main', { initContainers: [init], containers: [{ name: 'setup', image: 'busybox:1.36' }] }, { initContainers: [init], containers: [{ name: 'setup', image: 'nginx:1.25.3' }] }, [c('setup', 'busybox:1.36')]],
      // A container renamed keeps its image: a new name is a new container.
      ['rename', { containers: [{ name: 'web2', image: 'nginx:1.25.3' }] }, { containers: [web] }, [c('web2', 'nginx:1.25.3')]],
      // A container added next to the old ones.
      ['added', { containers: [web, { name: 'miner', image: 'evil:1' }] }, { containers: [web] }, [c('miner', 'evil:1')]],
      // The same image written another way is a different string: judged again (cache decides fast).
      ['respelled', { containers: [{ name: 'web', image: 'docker.io/library/nginx:1.25.3' }] }, { containers: [web] }, [c('web', 'docker.io/library/nginx:1.25.3')]],
      // An ephemeral container whose image changes in place.
      ['ephemeral', { containers: [web], ephemeralContainers: [{ name: 'dbg', image: 'busybox' }] }, { containers: [web], ephemeralContainers: [{ name: 'dbg', image: 'busybox:1.36' }] }, [c('dbg', 'busybox', 'ephemeralContainer')]],
      // Duplicate names cannot be paired with the old object: everything is judged.
      ['duplicate new', { containers: [web, { name: 'web', image: 'evil:1' }] }, { containers: [web] }, [c('web', 'nginx:1.25.3'), c('web', 'evil:1')]],
      ['duplicate old', { containers: [web] }, { containers: [web, { name: 'web', image: 'other:1' }] }, [c('web', 'nginx:1.25.3')]],
    ];
    for (const [what, after, before, expected] of cases) {
      assert.deepEqual(judge(podUpdateReview('p', after, before).body)?.images, expected, what);
    }
  });

  test('without an oldObject every image is judged', () => {
    const { body } = podUpdateReview('web', { containers: [web] }, { containers: [web] });
    (body['request'] as Record<string, unknown>)['oldObject'] = null;
    assert.deepEqual(judge(body)?.images, [c('web', 'nginx:1.25.3')]);
    delete (body['request'] as Record<string, unknown>)['oldObject'];
    assert.deepEqual(judge(body)?.images, [c('web', 'nginx:1.25.3')]);
  });

  test('pods/ephemeralcontainers UPDATE: a regular container changed in the same object is judged too', () => {
    const body = podUpdateReview('web', { containers: [{ name: 'web', image: 'evil:1' }], ephemeralContainers: [{ name: 'dbg', image: 'busybox:1.36' }] }, { containers: [web] }, { subResource: 'ephemeralcontainers' }).body;
    assert.deepEqual(judge(body)?.images, [c('web', 'evil:1'), c('dbg', 'busybox:1.36', 'ephemeralContainer')]);
  });

  test('image volumes are judged like container images, on CREATE and when they change', () => {
    const create = reviewOf({ group: '', version: 'v1', resource: 'pods' }, 'Pod', {
      metadata: { name: 'p' },
      spec: { containers: [web], volumes: [{ name: 'cfg', configMap: { name: 'x' } }, { name: 'tools', image: { reference: 'evil/tools:1' } }] },
    }).body;
    assert.deepEqual(judge(create)?.images, [c('web', 'nginx:1.25.3'), c('tools', 'evil/tools:1', 'imageVolume')]);
    const update = podUpdateReview('p', { containers: [web], imageVolumes: [{ name: 'tools', reference: 'evil/tools:2' }] }, { containers: [web], imageVolumes: [{ name: 'tools', reference: 'evil/tools:1' }] }).body;
    assert.deepEqual(judge(update)?.images, [c('tools', 'evil/tools:2', 'imageVolume')]);
  });

  test('changedImages is order-independent and pairs by kind and name', () => {
    const before = [c('a', 'x:1'), c('b', 'y:1'), c('a', 'z:1', 'initContainer')];
    assert.deepEqual(changedImages([c('b', 'y:1'), c('a', 'x:1'), c('a', 'z:1', 'initContainer')], before), []);
    assert.deepEqual(changedImages([c('a', 'z:1'), c('b', 'y:1')], before), [c('a', 'z:1')]);
    assert.deepEqual(changedImages([c('a', 'x:1')], undefined), [c('a', 'x:1')]);
  });
});

describe('workload templates', () => {
  const kinds = Object.keys(WORKLOAD_TYPES) as WorkloadKindName[];

  test('CREATE of every workload kind decodes its pod template, naming the workload', () => {
    for (const kind of kinds) {
      const review = judge(workloadReview(kind, 'web', { initContainers: [{ name: 'setup', image: 'busybox:1.36' }], containers: [{ name: 'web', image: 'nginx:1.25.3' }] }).body);
      const workload = { kind, name: 'web' };
      assert.deepEqual(
        review,
        {
          kind,
          name: 'web',
          images: [
            { container: 'setup', kind: 'initContainer', image: 'busybox:1.36', workload },
            { container: 'web', kind: 'container', image: 'nginx:1.25.3', workload },
          ],
        },
        kind,
      );
    }
  });

  test('a CronJob is read from spec.jobTemplate.spec.template', () => {
    const object = workloadObject('CronJob', 'nightly', { containers: [{ name: 'job', image: 'backup:2' }] });
    assert.ok('jobTemplate' in (object['spec'] as object));
    assert.deepEqual(judge(reviewOf(WORKLOAD_TYPES.CronJob, 'CronJob', object).body)?.images, [
      { container: 'job', kind: 'container', image: 'backup:2', workload: { kind: 'CronJob', name: 'nightly' } },
    ]);
  });

  test('UPDATE: only the images the template changes; a scale or a label change has none', () => {
    for (const kind of kinds) {
      const old = { containers: [{ name: 'web', image: 'nginx:1.25.3' }, { name: 'log', image: 'fluent-bit:3' }] };
      const changed = judge(workloadReview(kind, 'web', { containers: [{ name: 'web', image: 'nginx:1.25.4' }, old.containers[1]!] }, { operation: 'UPDATE', oldSpec: old }).body);
      assert.deepEqual(changed?.images, [{ container: 'web', kind: 'container', image: 'nginx:1.25.4', workload: { kind, name: 'web' } }], kind);
      const scaled = workloadReview(kind, 'web', old, { operation: 'UPDATE', oldObject: workloadObject(kind, 'web', old, { replicas: 7 }) });
      assert.deepEqual(judge(scaled.body)?.images, [], kind);
    }
  });

  test('subresources of workloads (scale, status) are not ours', () => {
    for (const subResource of ['scale', 'status']) {
      assert.equal(judge(workloadReview('Deployment', 'web', { containers: [{ name: 'web', image: 'x:1' }] }, { operation: 'UPDATE', subResource }).body), undefined);
    }
  });

  test('a ReplicationController without a template has no image; other kinds must have one', () => {
    const rc = reviewOf(WORKLOAD_TYPES.ReplicationController, 'ReplicationController', { metadata: { name: 'rc' }, spec: { replicas: 0 } });
    assert.deepEqual(judge(rc.body), { kind: 'ReplicationController', name: 'rc', images: [] });
    const dep = reviewOf(WORKLOAD_TYPES.Deployment, 'Deployment', { metadata: { name: 'd' }, spec: { replicas: 1 } });
    assert.throws(() => judge(dep.body), (e: unknown) => e instanceof BadRequestError && /request\.object\.spec\.template must be an object/.test(e.message));
    const cron = reviewOf(WORKLOAD_TYPES.CronJob, 'CronJob', { metadata: { name: 'c' }, spec: { jobTemplate: { spec: { template: { spec: { containers: 'x' } } } } } });
    assert.throws(() => judge(cron.body), /CronJob template spec\.containers must be a list/);
  });

  test('a workload without a name is named by generateName', () => {
    const object = workloadObject('Job', 'ignored', { containers: [{ name: 'job', image: 'x:1' }] });
    object['metadata'] = { generateName: 'migrate-' };
    assert.deepEqual(judge(reviewOf(WORKLOAD_TYPES.Job, 'Job', object).body)?.name, 'migrate-');
  });
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeAdmissionReview, encodeAdmissionResponse, imagesToJudge } from '../../src/admission/admission-review.js';
import { decodeImageReview, encodeImageReviewResponse } from '../../src/admission/image-review.js';
import { BadRequestError } from '../../src/errors.js';
import { admissionReview, imageReview } from '../helpers/harness.js';
import { judgedShape } from '../helpers/review-shape.js';

test('v1 and v1beta1 decode to one model and encode back to their own version', () => {
  for (const apiVersion of ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1']) {
    const { uid, body } = admissionReview({ containers: ['nginx:1'] }, { apiVersion, uid: 'u-1' });
    const req = decodeAdmissionReview(body);
    assert.equal(req.apiVersion, apiVersion);
    assert.equal(uid, 'u-1');
    assert.deepEqual(JSON.parse(encodeAdmissionResponse(req, { allowed: false, message: 'no', warnings: ['w'] })), {
      apiVersion,
      kind: 'AdmissionReview',
      response: { uid: 'u-1', allowed: false, status: { code: 403, reason: 'Forbidden', message: 'no' }, warnings: ['w'] },
    });
  }
});

test('every container of a new pod counts: init, regular and ephemeral', () => {
  const { body } = admissionReview({
    containers: ['a:1', { name: 'web', image: 'b:1' }],
    initContainers: [{ name: 'setup', image: 'c:1' }],
    ephemeralContainers: [{ name: 'dbg', image: 'd:1' }],
  });
  const review = judgedShape(imagesToJudge(decodeAdmissionReview(body)));
  assert.deepEqual(review, {
    kind: 'Pod',
    name: 'web-7d4b9c-',
    images: [
      { container: 'setup', kind: 'initContainer', image: 'c:1' },
      { container: 'c0', kind: 'container', image: 'a:1' },
      { container: 'web', kind: 'container', image: 'b:1' },
      { container: 'dbg', kind: 'ephemeralContainer', image: 'd:1' },
    ],
  });
});

test('pods/ephemeralcontainers UPDATE judges only the ephemeral containers it adds', () => {
  const { body } = admissionReview(
    { containers: ['nginx'], ephemeralContainers: [{ name: 'old', image: 'busybox:1' }, { name: 'new', image: 'busybox:2' }] },
    { operation: 'UPDATE', subResource: 'ephemeralcontainers', oldSpec: { containers: ['nginx'], ephemeralContainers: [{ name: 'old', image: 'busybox:1' }] } },
  );
  assert.deepEqual(judgedShape(imagesToJudge(decodeAdmissionReview(body)))?.['images'], [{ container: 'new', kind: 'ephemeralContainer', image: 'busybox:2' }]);
});

test('other operations, subresources and resources are not ours', () => {
  for (const [operation, subResource] of [['DELETE', undefined], ['CONNECT', undefined], ['UPDATE', 'status'], ['CREATE', 'binding'], ['CREATE', 'eviction']] as const) {
    const review = admissionReview({ containers: ['nginx'] }, { operation, ...(subResource !== undefined ? { subResource } : {}) }).body;
    assert.equal(imagesToJudge(decodeAdmissionReview(review)), undefined, `${operation} ${subResource ?? ''}`);
  }
  const { body } = admissionReview({ containers: ['nginx'] });
  const req = body['request'] as Record<string, unknown>;
  req['resource'] = { group: 'apps', version: 'v1', resource: 'controllerrevisions' };
  assert.equal(imagesToJudge(decodeAdmissionReview(body)), undefined);
});

test('malformed reviews are BadRequestErrors with a clear message', () => {
  const cases: Array<[unknown, RegExp]> = [
    [null, /JSON object/],
    [[], /JSON object/],
    [{ kind: 'Pod', apiVersion: 'v1' }, /kind must be AdmissionReview/],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v2' }, /apiVersion must be one of/],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1' }, /request must be an object/],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: { uid: '' } }, /uid is missing/],
    [{ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: { uid: 'x', namespace: 7 } }, /namespace must be a string/],
  ];
  for (const [body, message] of cases) {
    assert.throws(() => decodeAdmissionReview(body), (e: unknown) => e instanceof BadRequestError && e.statusCode === 400 && message.test(e.message));
  }
  const bad = admissionReview({ containers: ['x:1'] }).body;
  ((bad['request'] as Record<string, unknown>)['object'] as { spec: { containers: unknown } }).spec.containers = [{ name: 'a', image: 42 }];
  assert.throws(() => imagesToJudge(decodeAdmissionReview(bad)), /spec.containers\[0\].image must be a string/);
});

test('ImageReview v1alpha1 round trip', () => {
  const review = decodeImageReview(imageReview(['nginx', 'redis:7'], 'team-a'));
  assert.deepEqual(review, {
    namespace: 'team-a',
    images: [
      { container: '#1', kind: 'container', image: 'nginx' },
      { container: '#2', kind: 'container', image: 'redis:7' },
    ],
  });
  assert.deepEqual(encodeImageReviewResponse({ allowed: false, reason: 'nope' }), {
    apiVersion: 'imagepolicy.k8s.io/v1alpha1',
    kind: 'ImageReview',
    status: { allowed: false, reason: 'nope' },
  });
  assert.throws(() => decodeImageReview({ kind: 'ImageReview', apiVersion: 'imagepolicy.k8s.io/v1' }), BadRequestError);
});

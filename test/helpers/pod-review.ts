/**
 * A realistic pod CREATE AdmissionReview, as kube-apiserver sends it for a Deployment's pod (created by
 * the ReplicaSet controller): ownerReferences, managedFields, a projected service-account volume,
 * probes, resources, env, tolerations. About 3 KB with one container, 6 KB with five. Used by the
 * fault suites and, compiled, by the benchmarks (bench/lib/review.mjs).
 */
export function deploymentPodReview(images: readonly string[], opts: { uid?: string; namespace?: string } = {}): { uid: string; body: string } {
  const uid = opts.uid ?? `${Math.random().toString(16).slice(2, 10)}-7c1e-4c2b-9d1a-${Date.now().toString(16).padStart(12, '0').slice(-12)}`;
  const namespace = opts.namespace ?? 'shop';
  const containers = images.map((image, i) => ({
    name: i === 0 ? 'web' : `sidecar-${i}`,
    image,
    imagePullPolicy: 'IfNotPresent',
    ports: [{ name: 'http', containerPort: 8080 + i, protocol: 'TCP' }],
    env: [
      { name: 'LOG_LEVEL', value: 'info' },
      { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
    ],
    resources: { limits: { cpu: '500m', memory: '256Mi' }, requests: { cpu: '100m', memory: '128Mi' } },
    readinessProbe: { httpGet: { path: '/healthz', port: 8080 + i, scheme: 'HTTP' }, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 },
    volumeMounts: [{ name: 'kube-api-access-x7k2p', readOnly: true, mountPath: '/var/run/secrets/kubernetes.io/serviceaccount' }],
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  }));
  const review = {
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation: 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: '3d1f0c2e-9a55-4c8e-b1c2-6f0e5d1a2b3c',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
      },
      object: {
        kind: 'Pod',
        apiVersion: 'v1',
        metadata: {
          generateName: 'web-6d9f7c8b5-',
          namespace,
          labels: { app: 'web', 'pod-template-hash': '6d9f7c8b5' },
          annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-11-20T10:00:00Z' },
          ownerReferences: [
            { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-6d9f7c8b5', uid: '8b0e7f9a-1c2d-4e5f-a6b7-c8d9e0f1a2b3', controller: true, blockOwnerDeletion: true },
          ],
          managedFields: [
            { manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', time: '2026-11-20T10:00:00Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:generateName': {}, 'f:labels': { '.': {}, 'f:app': {} } } } },
          ],
        },
        spec: {
          volumes: [
            {
              name: 'kube-api-access-x7k2p',
              projected: {
                sources: [
                  { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
                  { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
                  { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
                ],
                defaultMode: 420,
              },
            },
          ],
          containers,
          restartPolicy: 'Always',
          terminationGracePeriodSeconds: 30,
          dnsPolicy: 'ClusterFirst',
          serviceAccountName: 'default',
          serviceAccount: 'default',
          securityContext: {},
          schedulerName: 'default-scheduler',
          tolerations: [
            { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
            { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
          ],
          priority: 0,
          enableServiceLinks: true,
          preemptionPolicy: 'PreemptLowerPriority',
        },
        status: {},
      },
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  };
  return { uid, body: JSON.stringify(review) };
}

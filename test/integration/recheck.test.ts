/**
 * Re-verification of running workloads end to end through the real Kubernetes client
 * (@kubernetes/client-node: kube/recheck-kube.ts, kube/event-sink.ts) against a tiny fake
 * kube-apiserver on 127.0.0.1 (TLS, test CA, kubeconfig with a token) that serves a pod list and
 * watch, a Lease and the events API; the scanner is a fake whose verdicts the test turns.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { composeRecheck, composeScangate } from '../../src/composition.js';
import { parseConfig } from '../../src/config.js';
import type { Scanner } from '../../src/engine/scan-coordinator.js';
import { createKubeEventSink, loadKubeCredentials } from '../../src/kube/event-sink.js';
import { createKubeLeaseApi, createPodSource } from '../../src/kube/recheck-kube.js';
import { createLogger } from '../../src/observability/logger.js';
import type { ScanVerdict } from '../../src/policy/types.js';
import { writeKubeconfig } from '../helpers/kubeconfig.js';
import { LogCapture, makeTlsFiles } from '../helpers/harness.js';

const D_WEB = `sha256:${'a'.repeat(64)}`;
const D_NEW = `sha256:${'b'.repeat(64)}`;
const WEB = `docker.io/library/struts@${D_WEB}`;
const NEW = `docker.io/library/redis@${D_NEW}`;

function podJson(namespace: string, name: string, image: string, imageID: string, owner?: { kind: string; name: string }, hash?: string): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      namespace,
      name,
      uid: `${name}-uid`,
      resourceVersion: '10',
      ...(hash !== undefined ? { labels: { 'pod-template-hash': hash } } : {}),
      ...(owner !== undefined ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: owner.kind, name: owner.name, uid: 'o', controller: true }] } : {}),
    },
    spec: { containers: [{ name: 'app', image }] },
    status: { phase: 'Running', containerStatuses: [{ name: 'app', image, imageID, ready: true, restartCount: 0, started: true, state: {}, lastState: {} }] },
  };
}

interface Call {
  readonly method: string;
  readonly url: string;
  readonly body: any;
}

/** A fake kube-apiserver: pods (list, watch), one Lease (resourceVersion checked), events (recorded). */
class FakeKubeApi {
  readonly calls: Call[] = [];
  pods: unknown[] = [];
  lease: any = undefined;
  private leaseVersion = 0;
  private readonly watchers = new Set<http.ServerResponse>();
  private readonly waiters: Array<() => void> = [];
  private readonly server = https.createServer({ cert: readFileSync(makeTlsFiles().certFile), key: readFileSync(makeTlsFiles().keyFile) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const call: Call = { method: req.method ?? '', url: req.url ?? '', body: text === '' ? undefined : JSON.parse(text) };
      this.calls.push(call);
      this.answer(call, res);
      for (const wake of this.waiters.splice(0)) wake();
    });
  });
  url = '';

  private answer(call: Call, res: http.ServerResponse): void {
    const url = new URL(call.url, 'https://x');
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (url.pathname === '/api/v1/pods' && url.searchParams.get('watch') === 'true') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      this.watchers.add(res);
      res.on('close', () => this.watchers.delete(res));
      return;
    }
    if (url.pathname === '/api/v1/pods') {
      json(200, { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '100' }, items: this.pods });
      return;
    }
    const leasePath = '/apis/coordination.k8s.io/v1/namespaces/scangate/leases';
    if (url.pathname === `${leasePath}/scangate-recheck` && call.method === 'GET') {
      if (this.lease === undefined) json(404, { kind: 'Status', code: 404, reason: 'NotFound' });
      else json(200, this.lease);
      return;
    }
    if (url.pathname === leasePath && call.method === 'POST') {
      if (this.lease !== undefined) return json(409, { kind: 'Status', code: 409, reason: 'AlreadyExists' });
      this.lease = { ...call.body, metadata: { ...call.body.metadata, resourceVersion: String(++this.leaseVersion) } };
      json(201, this.lease);
      return;
    }
    if (url.pathname === `${leasePath}/scangate-recheck` && call.method === 'PUT') {
      if (this.lease?.metadata?.resourceVersion !== call.body?.metadata?.resourceVersion) return json(409, { kind: 'Status', code: 409, reason: 'Conflict' });
      this.lease = { ...call.body, metadata: { ...call.body.metadata, resourceVersion: String(++this.leaseVersion) } };
      json(200, this.lease);
      return;
    }
    if (/^\/apis\/events\.k8s\.io\/v1\/namespaces\/[^/]+\/events$/.test(url.pathname) && call.method === 'POST') {
      json(201, call.body);
      return;
    }
    json(404, { kind: 'Status', code: 404 });
  }

  /** Sends a watch event to every open pod watch. */
  push(type: string, object: unknown): void {
    for (const res of this.watchers) res.write(`${JSON.stringify({ type, object })}\n`);
  }

  get watching(): number {
    return this.watchers.size;
  }

  async until(what: string, ok: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      // Woken by each API call, or re-checked every 50 ms for work that makes none (scanner calls).
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const res of this.watchers) res.end();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A scanner whose verdict per image the test sets; counts the scans. */
function fakeScanner(): Scanner & { verdicts: Map<string, 'pass' | 'fail'>; scans: string[] } {
  const verdicts = new Map<string, 'pass' | 'fail'>();
  const scans: string[] = [];
  return {
    verdicts,
    scans,
    scan(reference) {
      scans.push(reference.canonical);
      const digest = reference.digest ?? D_WEB;
      const verdict: ScanVerdict =
        verdicts.get(reference.canonical) === 'fail'
          ? { status: 'fail', digest, cause: 'policy', reasons: [{ gate: 'vulnerabilities', trigger: 'package', output: 'CRITICAL Vulnerability found in package - struts2 (CVE-2017-5638)' }] }
          : { status: 'pass', digest, warnings: 0 };
      return Promise.resolve(verdict);
    },
  };
}

const api = new FakeKubeApi();
let kubeconfigPath = '';

before(async () => {
  await api.start();
  kubeconfigPath = writeKubeconfig(api.url);
});
after(async () => {
  await api.close();
});

describe('re-verification against a fake kube-apiserver', () => {
  test('lease taken, pods listed and watched, a pass -> fail turn warns each workload, the gauge follows, the lease is released', { timeout: 60_000 }, async () => {
    api.pods = [
      podJson('shop', 'web-5f7c9d-x1', 'struts:2.3', WEB, { kind: 'ReplicaSet', name: 'web-5f7c9d' }, '5f7c9d'),
      podJson('shop', 'web-5f7c9d-x2', 'struts:2.3', WEB, { kind: 'ReplicaSet', name: 'web-5f7c9d' }, '5f7c9d'),
      podJson('ops', 'debug', 'struts:2.3', `docker-pullable://struts@${D_WEB}`),
      podJson('kube-system', 'dns', 'coredns:1', `docker.io/library/coredns@${D_NEW}`),
    ];
    const config = parseConfig(
      {
        INSECURE_HTTP: 'true',
        ANCHORE_CLI_URL: 'http://127.0.0.1:9/v1',
        RECHECK_ENABLED: 'true',
        POD_NAMESPACE: 'scangate',
        RECHECK_RATE: '100',
        LEASE_DURATION_S: '5',
        // A pass is cached 1 ms: the loop asks the scanner again a second later.
        CACHE_PASS_TTL_MS: '1',
      },
      {},
      (p) => readFileSync(p, 'utf8'),
    );
    const logs = new LogCapture();
    const logger = createLogger({ level: 'info', destination: logs });
    const credentials = loadKubeCredentials({ KUBECONFIG: kubeconfigPath }, () => false);
    assert.ok(credentials !== undefined);
    const { kubeConfig } = credentials;
    const scanner = fakeScanner();
    const scangate = composeScangate(config, { logger, scanner, eventSink: createKubeEventSink({ kubeConfig, reportingInstance: 'scangate-0' }) });
    const recheck = composeRecheck(scangate, {
      leaseApi: createKubeLeaseApi({ kubeConfig, namespace: 'scangate', name: 'scangate-recheck' }),
      podSource: (handlers) => createPodSource({ kubeConfig, ...handlers }),
      identity: 'scangate-0_test',
      logger,
    });
    recheck.start();
    try {
      await api.until('the lease', () => api.lease?.spec?.holderIdentity === 'scangate-0_test');
      await api.until('the pod watch', () => api.watching === 1);
      const list = api.calls.find((c) => c.url.startsWith('/api/v1/pods') && !c.url.includes('watch=true'));
      assert.ok(list);
      const selector = new URL(list.url, 'https://x').searchParams.get('fieldSelector');
      assert.equal(selector, 'metadata.namespace!=kube-system,metadata.namespace!=scangate,status.phase!=Succeeded,status.phase!=Failed');
      await api.until('the first scan', () => scanner.scans.includes(WEB));
      assert.ok(!scanner.scans.some((s) => s.includes('coredns')), 'an exempt namespace is never checked');
      await api.until('the gauge', () => recheck.state.verdictOf(WEB) === 'pass');
      const gauge = await scangate.metrics.registry.getSingleMetricAsString('scangate_running_images');
      assert.match(gauge, /scangate_running_images\{namespace="shop",verdict="pass"\} 1/);
      assert.match(gauge, /scangate_running_images\{namespace="ops",verdict="pass"\} 1/);

      // The image turns to fail: one event per workload running it.
      scanner.verdicts.set(WEB, 'fail');
      const events = (): Call[] => api.calls.filter((c) => c.method === 'POST' && c.url.includes('/events'));
      await api.until('two RunningImageFailed events', () => events().length >= 2);
      const byObject = new Map(events().map((e) => [`${e.body.regarding.kind}/${e.body.regarding.namespace}/${e.body.regarding.name}`, e.body]));
      assert.deepEqual([...byObject.keys()].sort(), ['Deployment/shop/web', 'Pod/ops/debug']);
      for (const event of byObject.values()) {
        assert.equal(event.type, 'Warning');
        assert.equal(event.reason, 'RunningImageFailed');
        assert.equal(event.action, 'Verify');
        assert.match(event.note, /Running image docker\.io\/library\/struts@sha256:a{64} now fails policy: vulnerabilities\/package: CRITICAL .*CVE-2017-5638/);
        assert.match(event.note, /next rollout, scale-up or rescheduling will be refused/);
      }
      assert.equal(events().length, 2, 'one event per workload, not per pod');
      assert.match(await scangate.metrics.registry.getSingleMetricAsString('scangate_running_images'), /namespace="shop",verdict="fail"\} 1/);
      // Admission reads the same cache: the failing verdict is there for the next pod.
      assert.equal(logs.find('running image now fails policy').length, 1);

      // A pod added through the watch brings its image to the loop.
      api.push('ADDED', podJson('shop', 'cache-0', 'redis:7', NEW, { kind: 'StatefulSet', name: 'cache' }));
      await api.until('the watched pod\'s scan', () => scanner.scans.includes(NEW));
      api.push('DELETED', podJson('shop', 'cache-0', 'redis:7', NEW, { kind: 'StatefulSet', name: 'cache' }));
      await api.until('the deleted pod forgotten', () => recheck.state.verdictOf(NEW) === undefined);
    } finally {
      await recheck.stop();
    }
    assert.equal(api.lease?.spec?.holderIdentity, '', 'released at stop');
    assert.equal(recheck.isLeader, false);
    assert.equal(await scangate.metrics.registry.getSingleMetricAsString('scangate_running_images').then((t) => /verdict=/.test(t)), false, 'a replica not leading reports nothing');
    await scangate.events?.close();
    scangate.scannerTransport.dispose();
  });
});

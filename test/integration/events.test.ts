/**
 * Kubernetes Events through the real client (@kubernetes/client-node, kube/event-sink.ts) against a
 * tiny fake Kubernetes API server on 127.0.0.1 that records every call, alone and behind the whole
 * webhook (real sockets both ways).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { composeScangate } from '../../src/composition.js';
import { parseConfig } from '../../src/config.js';
import { KubeApiError } from '../../src/errors.js';
import { startServer } from '../../src/http/server.js';
import { REPORTING_CONTROLLER, createKubeEventSink, eventName, loadKubeCredentials } from '../../src/kube/event-sink.js';
import type { NewEvent } from '../../src/observability/events.js';
import { createLogger } from '../../src/observability/logger.js';
import { startScannerSimulator, type ScannerSimulator } from '@scangate/simulator';
import { writeKubeconfig } from '../helpers/kubeconfig.js';
import { LogCapture, makeTlsFiles, request } from '../helpers/harness.js';
import { reviewOf, workloadReview } from '../helpers/workload-review.js';

interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: any;
}

/** A fake kube-apiserver over TLS (the test CA): records calls; answers 201/200 with the body, or what `answer` says. */
class FakeKubeApi {
  readonly calls: Recorded[] = [];
  answer: (call: Recorded) => { status: number; body?: unknown } | 'hang' = (call) => ({ status: call.method === 'POST' ? 201 : 200, body: call.body });
  private readonly waiters: Array<() => void> = [];
  private readonly server = https.createServer({ cert: readFileSync(makeTlsFiles().certFile), key: readFileSync(makeTlsFiles().keyFile) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const call: Recorded = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: text === '' ? undefined : JSON.parse(text) };
      this.calls.push(call);
      for (const wake of this.waiters.splice(0)) wake();
      const answer = this.answer(call);
      if (answer === 'hang') return;
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body ?? {}));
    });
  });
  url = '';

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /**
   * Resolves once `n` calls have arrived (woken by each arrival, no polling). Rejects after 20 s, so a
   * missing event fails the test and its clean-up still runs (events arrive within milliseconds).
   */
  async waitFor(n: number): Promise<void> {
    const deadline = performance.now() + 20_000;
    while (this.calls.length < n) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`expected ${String(n)} calls to the Kubernetes API, got ${String(this.calls.length)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const api = new FakeKubeApi();
let kubeconfigPath = '';
let sim: ScannerSimulator;

before(async () => {
  await api.start();
  kubeconfigPath = writeKubeconfig(api.url);
  sim = await startScannerSimulator({ user: 'admin', password: 'foobar' });
});
after(async () => {
  await api.close();
  await sim.close();
});

function credentials() {
  const found = loadKubeCredentials({ KUBECONFIG: kubeconfigPath }, () => false);
  assert.ok(found !== undefined);
  return found;
}

const EVENT: NewEvent = {
  namespace: 'shop',
  regarding: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'apache-struts2', uid: '0b7c-uid' },
  reason: 'ImageDenied',
  action: 'Deny',
  note: 'Image failed policy check: kaizheh/apache-struts2-cve-2017-5638:2.3.12 (...): CVE-2017-5638',
  eventTimeMs: Date.UTC(2026, 11, 7, 23, 40, 47, 123),
};
const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

describe('credentials', () => {
  test('KUBECONFIG first; the service account only in a pod; nothing else guessed', () => {
    const found = credentials();
    assert.equal(found.source, 'kubeconfig');
    assert.equal(found.server, api.url);
    assert.equal(loadKubeCredentials({}, () => true), undefined, 'no KUBERNETES_SERVICE_HOST: not in a pod');
    assert.equal(loadKubeCredentials({ KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' }, () => false), undefined, 'no token file');
    const inCluster = loadKubeCredentials({ KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' }, () => true);
    assert.equal(inCluster?.source, 'in-cluster');
    assert.throws(() => loadKubeCredentials({ KUBECONFIG: join(tmpdir(), 'scangate-no-such-kubeconfig') }, () => false));
  });

  test('event names are DNS subdomains whatever the object name (generateName prefixes, upper case, empty)', () => {
    for (const name of ['apache-struts2-7d4b9c-', 'Web.App', '', '...', '-x-', 'a'.repeat(300)]) {
      const n = eventName(name, EVENT.eventTimeMs);
      assert.match(n, DNS_SUBDOMAIN, name);
      assert.ok(n.length <= 253);
    }
  });
});

describe('the sink, with the real client', () => {
  test('create: POST events.k8s.io/v1 in the object namespace, a Warning with every field the API validates', async () => {
    api.calls.length = 0;
    const sink = createKubeEventSink({ kubeConfig: credentials().kubeConfig, reportingInstance: 'scangate-7d9f-abcde' });
    const { name } = await sink.create(EVENT, new AbortController().signal);
    const [call] = api.calls;
    assert.equal(call?.method, 'POST');
    assert.equal(call.url, '/apis/events.k8s.io/v1/namespaces/shop/events');
    assert.equal(call.headers.authorization, 'Bearer fake-token-for-tests');
    assert.match(call.headers['content-type'] ?? '', /^application\/json/);
    assert.match(name, DNS_SUBDOMAIN);
    assert.ok(name.startsWith('apache-struts2.'));
    assert.deepEqual(call.body, {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace: 'shop' },
      eventTime: '2026-12-07T23:40:47.123000Z',
      type: 'Warning',
      reason: 'ImageDenied',
      action: 'Deny',
      note: EVENT.note,
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: 'scangate-7d9f-abcde',
      regarding: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'apache-struts2', uid: '0b7c-uid' },
    });
  });

  test('a create that repeated before it was written carries its series', async () => {
    api.calls.length = 0;
    const sink = createKubeEventSink({ kubeConfig: credentials().kubeConfig, reportingInstance: 'i' });
    await sink.create({ ...EVENT, series: { count: 3, lastObservedMs: EVENT.eventTimeMs + 2000 } }, new AbortController().signal);
    assert.deepEqual(api.calls[0]?.body.series, { count: 3, lastObservedTime: '2026-12-07T23:40:49.123000Z' });
  });

  test('series: a JSON patch of /series on the event by name', async () => {
    api.calls.length = 0;
    const sink = createKubeEventSink({ kubeConfig: credentials().kubeConfig, reportingInstance: 'i' });
    await sink.updateSeries({ namespace: 'shop', name: 'apache-struts2.18f0a' }, { count: 4, lastObservedMs: EVENT.eventTimeMs + 60_000 }, new AbortController().signal);
    const [call] = api.calls;
    assert.equal(call?.method, 'PATCH');
    assert.equal(call.url, '/apis/events.k8s.io/v1/namespaces/shop/events/apache-struts2.18f0a');
    assert.equal(call.headers['content-type'], 'application/json-patch+json');
    assert.match(String(call.body[0]?.value.lastObservedTime), MICRO_TIME);
    assert.deepEqual(call.body, [{ op: 'add', path: '/series', value: { count: 4, lastObservedTime: '2026-12-07T23:41:47.123000Z' } }]);
  });

  test('failures become KubeApiError with the status, never the API answer; an abort ends a hanging call', { timeout: 30_000 }, async () => {
    const sink = createKubeEventSink({ kubeConfig: credentials().kubeConfig, reportingInstance: 'i' });
    try {
      api.answer = () => ({ status: 404, body: { kind: 'Status', message: 'events "x" not found' } });
      await assert.rejects(sink.updateSeries({ namespace: 'shop', name: 'x' }, { count: 2, lastObservedMs: 0 }, new AbortController().signal), (e: unknown) => e instanceof KubeApiError && e.status === 404);
      api.answer = () => ({ status: 422, body: { kind: 'Status', message: 'Event "x" is invalid: note: tenant-text-here' } });
      await assert.rejects(
        sink.create(EVENT, new AbortController().signal),
        (e: unknown) => e instanceof KubeApiError && e.status === 422 && e.code === 'SCANGATE_ERR_KUBE_API' && !e.message.includes('tenant-text-here'),
      );
      api.answer = () => 'hang';
      const controller = new AbortController();
      const pending = sink.create(EVENT, controller.signal);
      const arrived = api.calls.length + 1;
      await api.waitFor(arrived);
      controller.abort();
      await assert.rejects(pending, (e: unknown) => e instanceof KubeApiError && e.status === undefined && e.message === 'create event: timed out');
    } finally {
      api.answer = (call) => ({ status: call.method === 'POST' ? 201 : 200, body: call.body });
    }
  });
});

/** scangate's HTTPS webhook on 127.0.0.1:0, writing its events through the real client to the fake API. */
async function startWebhookWithEvents(env: Record<string, string>, scannerUrl: string) {
  const tls = makeTlsFiles();
  const config = parseConfig(
    {
      TLS_CERT_FILE: tls.certFile,
      TLS_KEY_FILE: tls.keyFile,
      ANCHORE_CLI_URL: scannerUrl,
      ANCHORE_CLI_USER: 'admin',
      ANCHORE_CLI_PASS: 'foobar',
      SCANNER_POLL_INITIAL_MS: '20',
      SCANNER_POLL_MAX_MS: '100',
      ...env,
    },
    {},
    (p) => readFileSync(p, 'utf8'),
  );
  const logger = createLogger({ level: 'info', destination: new LogCapture() });
  const scangate = composeScangate(config, { logger, eventSink: createKubeEventSink({ kubeConfig: credentials().kubeConfig, reportingInstance: 'scangate-0' }) });
  const running = await startServer(scangate.app, {
    host: '127.0.0.1',
    port: 0,
    tls: { certFile: tls.certFile, keyFile: tls.keyFile, reloadIntervalMs: config.server.certReloadIntervalMs },
    logger,
    maxConnections: 16,
    ...scangate.connectionEvents,
  });
  scangate.state.ready = true;
  return {
    url: running.url,
    close: async () => {
      scangate.state.ready = false;
      await running.close(2000);
      await scangate.events?.close();
      scangate.close();
      await scangate.coordinator.idle();
    },
  };
}

describe('behind the webhook', () => {
  test('the struts2 Deployment refused at apply: its event holds the denial with the CVE; a dry run records none', { timeout: 60_000 }, async () => {
    api.calls.length = 0;
    const running = await startWebhookWithEvents({}, sim.url);
    try {
      const struts = [{ name: 'web', image: 'kaizheh/apache-struts2-cve-2017-5638:2.3.12' }];
      const { body } = workloadReview('Deployment', 'apache-struts2', { containers: struts });
      const res = await request(`${running.url}/validate?timeout=10s`, { body });
      assert.equal(res.json.response.allowed, false);
      const message = res.json.response.status.message as string;
      // The image name holds it; the CVE id in the findings is the admission core's (issue 15, I4).
      assert.match(message, /cve-2017-5638/i);
      await api.waitFor(1);
      const [call] = api.calls;
      assert.equal(call?.url, '/apis/events.k8s.io/v1/namespaces/shop/events');
      assert.equal(call.body.reason, 'ImageDenied');
      assert.equal(call.body.type, 'Warning');
      assert.equal(call.body.note, message);
      assert.deepEqual(call.body.regarding, { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'apache-struts2' });

      // A dry run (the verdict is cached now: a dry run starts no scan): judged and answered alike, but no event.
      const dry = workloadReview('Deployment', 'apache-struts2', { containers: struts }, { uid: 'dry-1' });
      (dry.body['request'] as Record<string, unknown>)['dryRun'] = true;
      const dryRes = await request(`${running.url}/validate?timeout=10s`, { body: dry.body });
      assert.equal(dryRes.json.response.allowed, false);
      assert.equal(dryRes.json.response.status.message, message);

      // Applied again (a GitOps controller retrying): the same event, its series counted (the dry run
      // did not count: 2, not 3).
      await request(`${running.url}/validate?timeout=10s`, { body: workloadReview('Deployment', 'apache-struts2', { containers: struts }).body });
      await api.waitFor(2);
      assert.equal(api.calls[1]?.method, 'PATCH');
      assert.equal(api.calls[1]?.body[0]?.value.count, 2);

      // A clean pod: nothing recorded. A pod admitted by warn mode: ImageWarned.
      const pod = reviewOf({ group: '', version: 'v1', resource: 'pods' }, 'Pod', {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'web-1', namespace: 'shop', uid: 'c0ffee-uid' },
        spec: { containers: struts },
      });
      const warned = await request(`${running.url}/validate/warn?timeout=10s`, { body: pod.body });
      assert.equal(warned.json.response.allowed, true);
      await api.waitFor(3);
      assert.equal(api.calls[2]?.body.reason, 'ImageWarned');
      assert.equal(api.calls[2]?.body.action, 'Admit');
      assert.deepEqual(api.calls[2]?.body.regarding, { apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: 'web-1', uid: 'c0ffee-uid' });
      assert.match(api.calls[2]?.body.note as string, /cve-2017-5638/i);
    } finally {
      await running.close();
    }
  });

  test('break-glass use and an admission without a verdict: BreakGlassUsed and AdmittedUnverified', { timeout: 60_000 }, async () => {
    api.calls.length = 0;
    // A scanner that takes a minute to analyse: no verdict within the request's budget.
    const slow = await startScannerSimulator({ user: 'admin', password: 'foobar', analysisDelayMs: 60_000 });
    const running = await startWebhookWithEvents({ BREAK_GLASS_USERS: 'jane' }, sim.url);
    const slowRunning = await startWebhookWithEvents({}, slow.url);
    try {
      const glass = workloadReview('Deployment', 'hotfix', { containers: [{ name: 'web', image: 'kaizheh/apache-struts2-cve-2017-5638:2.3.12' }] });
      const object = (glass.body['request'] as { object: { spec: { template: { metadata: Record<string, unknown> } } } }).object;
      object.spec.template.metadata['annotations'] = { 'scangate.io/break-glass': 'INC-42 \u001b[31mred' };
      const glassRes = await request(`${running.url}/validate?timeout=3s`, { body: glass.body });
      assert.equal(glassRes.json.response.allowed, true);
      await api.waitFor(1);
      assert.equal(api.calls[0]?.body.reason, 'BreakGlassUsed');
      assert.equal(api.calls[0]?.body.action, 'Admit');
      assert.match(api.calls[0]?.body.note as string, /^Break-glass used by "jane" \(reason: "INC-42 \\x1b\[31mred"\): admitted despite: /);

      const unverified = workloadReview('Deployment', 'fresh', { containers: [{ name: 'web', image: 'nginx:1.25.3' }] });
      const res = await request(`${slowRunning.url}/validate?timeout=3s`, { body: unverified.body });
      assert.equal(res.json.response.allowed, true);
      await api.waitFor(2);
      assert.equal(api.calls[1]?.body.reason, 'AdmittedUnverified');
      assert.deepEqual(api.calls[1]?.body.regarding, { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'shop', name: 'fresh' });
      assert.match(api.calls[1]?.body.note as string, /admitted without a verdict/);
    } finally {
      await running.close();
      await slowRunning.close();
      await slow.close();
    }
  });
});

/**
 * End-to-end, adversarial (issue 15, "Done when", second bullet): a tenant, `mallory`, who holds only the
 * built-in `edit` ClusterRole in one enforce namespace (a RoleBinding; impersonated like
 * `kubectl --as=mallory`), against kube-apiserver and kube-controller-manager with one ServiceAccount
 * per controller (scripts/cluster-up.sh), scangate and the scanner simulator (local-cluster.ts).
 *
 * A. Break-glass nobody granted, on every kind that makes pods (Deployment, StatefulSet, DaemonSet,
 *    ReplicaSet, ReplicationController, Job, CronJob) and on bare pods and ephemeral containers: a
 *    template whose failing image was deferred (the 11th new image of one review) is admitted with a
 *    warning; then the break-glass annotation goes on the workload's own metadata (not sent to
 *    scangate), then into the template with the images unchanged; also with a hand-written
 *    `scangate.io/break-glass-proof`, and with a proof copied from a template that an allowed person
 *    (`alice`) made for another image set.
 * B. The vetting point failing open: a Deployment whose review passes the body limit (the API server
 *    writes `<` as `\u003c`), and one created while the workload entry cannot be reached.
 * C. Starvation: while the tenant sends ~4 MiB reviews naming an image that never finishes analysis,
 *    10 reviews of many new images, one /mutate review with many images (pinning on), or slows "its
 *    registry" so that scans of its images time out (to open the breaker), the cluster admin's pod
 *    creations in another namespace must keep succeeding, each within 1 s of the baseline measured
 *    first in the same test.
 * D. Other hostile combinations: namespace labels, image volumes, init containers, dry runs.
 * Z. At the end no pod of a failing image exists in the enforce namespace.
 *
 * Every attack is bounded (each loop has a deadline) and talks to 127.0.0.1 only. Attacks do not stop
 * at the first breach: each records what it got, and the test fails listing every breach. Skips like
 * the other e2e suites when no control plane can be had, unless CI=true.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiClient, statusMessage, type ApiAnswer } from './api-client.js';
import { waitFor } from './harness.js';
import { Cluster, DENIED, log, MINUTE, setUp, skipReason, tearDown } from './local-cluster.js';

const reason = skipReason();

const TENANT = 'mallory';
/** Allowed to break glass (BREAK_GLASS_USERS). */
const ALLOWED = 'alice';
/** The tenant's namespace, labelled scangate.io/mode=enforce. */
const NS = 'adv';
/** The cluster admin's namespace (the victim of the starvation attempts). */
const VICTIM_NS = 'victim';
const FAILING_REPO = 'kaizheh/apache-struts2-cve-2017-5638';
/** Any tag of the struts repository fails (samples/scanner-data.json: repository-wide findings). */
const failing = (tag: string): string => `${FAILING_REPO}:${tag}`;
/** Stays `analyzing` forever in the simulator (fault neverAnalyzed): a scan that never ends. */
const SLOW_REPO = 'docker.io/mallory/slow';
const slow = (tag: string): string => `mallory/slow:${tag}`;
const GLASS = 'scangate.io/break-glass';
const PROOF = 'scangate.io/break-glass-proof';
const NODE = 'adv-node';
/** kube-apiserver's timeout for the pod entries (deploy.sh WEBHOOK_TIMEOUT_SECONDS). */
const WEBHOOK_TIMEOUT_S = 30;
/** How much slower than its baseline a victim's pod creation may be during an attack (issue 15, I2). */
const VICTIM_SLACK_MS = 1000;

type Kind = 'Deployment' | 'StatefulSet' | 'DaemonSet' | 'ReplicaSet' | 'ReplicationController' | 'Job' | 'CronJob';

const KINDS: Record<Kind, { readonly base: string; readonly apiVersion: string; readonly templatePath: readonly string[] }> = {
  Deployment: { base: `/apis/apps/v1/namespaces/${NS}/deployments`, apiVersion: 'apps/v1', templatePath: ['spec', 'template'] },
  StatefulSet: { base: `/apis/apps/v1/namespaces/${NS}/statefulsets`, apiVersion: 'apps/v1', templatePath: ['spec', 'template'] },
  DaemonSet: { base: `/apis/apps/v1/namespaces/${NS}/daemonsets`, apiVersion: 'apps/v1', templatePath: ['spec', 'template'] },
  ReplicaSet: { base: `/apis/apps/v1/namespaces/${NS}/replicasets`, apiVersion: 'apps/v1', templatePath: ['spec', 'template'] },
  ReplicationController: { base: `/api/v1/namespaces/${NS}/replicationcontrollers`, apiVersion: 'v1', templatePath: ['spec', 'template'] },
  Job: { base: `/apis/batch/v1/namespaces/${NS}/jobs`, apiVersion: 'batch/v1', templatePath: ['spec', 'template'] },
  CronJob: { base: `/apis/batch/v1/namespaces/${NS}/cronjobs`, apiVersion: 'batch/v1', templatePath: ['spec', 'jobTemplate', 'spec', 'template'] },
};

interface ContainerSpec {
  readonly name: string;
  readonly image: string;
  readonly env?: ReadonlyArray<{ readonly name: string; readonly value: string }>;
}

interface PodTemplate {
  readonly metadata: { readonly labels: Record<string, string>; readonly annotations: Record<string, string> };
  readonly spec: Record<string, unknown>;
}

/** `{a: {b: value}}` for path ['a', 'b']. */
function nest(path: readonly string[], value: unknown): Record<string, unknown> {
  let node: unknown = value;
  for (const key of [...path].reverse()) node = { [key]: node };
  return node as Record<string, unknown>;
}

function containers(images: readonly string[], env?: ContainerSpec['env']): ContainerSpec[] {
  return images.map((image, i) => ({ name: `c${String(i)}`, image, ...(env !== undefined && i === 0 ? { env } : {}) }));
}

function podTemplate(app: string, kind: Kind, list: { containers: readonly ContainerSpec[]; initContainers?: readonly ContainerSpec[] }, annotations: Record<string, string> = {}): PodTemplate {
  const batch = kind === 'Job' || kind === 'CronJob';
  return {
    metadata: { labels: { app }, annotations },
    spec: {
      containers: list.containers,
      ...(list.initContainers !== undefined ? { initContainers: list.initContainers } : {}),
      ...(batch ? { restartPolicy: 'Never' } : {}),
    },
  };
}

/**
 * A workload of `kind` with `template`. Jobs are created suspended (a suspended Job that never ran may
 * still change its template's labels and annotations) and CronJobs suspended with a schedule of every
 * minute: the attack un-suspends them at the end.
 */
function workload(kind: Kind, name: string, template: PodTemplate, metadataAnnotations: Record<string, string> = {}): Record<string, unknown> {
  const metadata = { name, namespace: NS, annotations: metadataAnnotations };
  const selector = { matchLabels: { app: name } };
  const head = { apiVersion: KINDS[kind].apiVersion, kind, metadata };
  switch (kind) {
    case 'Deployment':
    case 'ReplicaSet':
      return { ...head, spec: { replicas: 1, selector, template } };
    case 'StatefulSet':
      return { ...head, spec: { replicas: 1, serviceName: name, podManagementPolicy: 'Parallel', selector, template } };
    case 'DaemonSet':
      return { ...head, spec: { selector, template } };
    case 'ReplicationController':
      return { ...head, spec: { replicas: 1, selector: { app: name }, template } };
    case 'Job':
      return { ...head, spec: { suspend: true, backoffLimit: 0, template } };
    case 'CronJob':
      return { ...head, spec: { schedule: '* * * * *', suspend: true, jobTemplate: { spec: { backoffLimit: 0, template } } } };
  }
}

interface PodItem {
  readonly metadata: { readonly name: string; readonly annotations?: Record<string, string> };
  readonly spec: {
    readonly containers?: ReadonlyArray<{ readonly image: string }>;
    readonly initContainers?: ReadonlyArray<{ readonly image: string }>;
    readonly ephemeralContainers?: ReadonlyArray<{ readonly image: string }>;
    readonly volumes?: ReadonlyArray<{ readonly image?: { readonly reference?: string } }>;
  };
}

interface EventItem {
  readonly metadata: { readonly name: string };
  readonly involvedObject?: { readonly name?: string; readonly kind?: string };
  readonly reason?: string;
  readonly message?: string;
  readonly count?: number;
  readonly type?: string;
}

/** Every image a pod's spec makes a node pull. */
function imagesOfPod(pod: PodItem): string[] {
  const s = pod.spec;
  return [
    ...(s.containers ?? []).map((c) => c.image),
    ...(s.initContainers ?? []).map((c) => c.image),
    ...(s.ephemeralContainers ?? []).map((c) => c.image),
    ...(s.volumes ?? []).flatMap((v) => (v.image?.reference !== undefined ? [v.image.reference] : [])),
  ];
}

/**
 * Failing images that `alice` broke glass for (in A and E): by design, a pod with exactly these
 * images and her reason may run (the proof covers what she already allowed), whoever creates it.
 */
const ALLOWED_IMAGES: ReadonlySet<string> = new Set([failing('alice-approved'), failing('alice-e')]);

/** A failing image that no allowed person broke glass for (the exact text; another digest is another image). */
const isFailing = (image: string): boolean => image.includes(FAILING_REPO) && !ALLOWED_IMAGES.has(image);

const short = (text: string, max = 240): string => (text.length <= max ? text : `${text.slice(0, max)}…`);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What one step of an attack got back (for the log and the failure message). */
interface StepResult {
  readonly attack: string;
  readonly step: string;
  readonly status: number | string;
  readonly message: string;
}

describe('e2e adversarial: a tenant with only `edit` in one namespace (issue 15)', { skip: reason ?? false }, () => {
  let cluster: Cluster;
  let api: ApiClient;
  let failed = false;
  let keyFile = '';
  let seq = 0;
  const steps: StepResult[] = [];

  const baseEnv = (): Record<string, string> => ({
    BREAK_GLASS_USERS: ALLOWED,
    BREAK_GLASS_GROUPS: '',
    // The proof's key (the design of issue 15: an HMAC written by the mutating entry); ignored by a
    // scangate that has no such setting.
    BREAK_GLASS_KEY_FILE: keyFile,
    PIN_DIGESTS: 'false',
  });

  function scenario(name: string, fn: () => Promise<void>, timeoutMs = 10 * MINUTE): void {
    it(name, { timeout: timeoutMs }, async () => {
      const started = performance.now();
      try {
        await fn();
        log(`${name}: passed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      } catch (err) {
        failed = true;
        log(`${name}: FAILED after ${((performance.now() - started) / 1000).toFixed(1)} s: ${String(err)}`);
        log(await cluster.diagnostics());
        throw err;
      }
    });
  }

  /** deploy.sh out-of-cluster for the running scangate, then waits until the API server calls it. */
  async function register(pin = false): Promise<void> {
    await cluster.script('deploy.sh', [], { WEBHOOK_URL: cluster.webhookUrl, WEBHOOK_TIMEOUT_SECONDS: String(WEBHOOK_TIMEOUT_S), PIN_DIGESTS: pin ? 'true' : 'false' });
    await cluster.waitForWebhookAnswer(`${DENIED}: Images using latest tag are not allowed`);
  }

  /** A fresh scangate (no scans in flight, breaker closed), registered. */
  async function restartScangate(extra: Record<string, string> = {}): Promise<void> {
    await cluster.scangate?.stop();
    await cluster.startScangate({ ...baseEnv(), ...extra });
    await register(extra['PIN_DIGESTS'] === 'true');
  }

  async function simFaults(config: Record<string, unknown>): Promise<void> {
    const r = await fetch(`http://127.0.0.1:${String(cluster.simPort)}/_sim/faults`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ neverAnalyzed: [SLOW_REPO], ...config }),
    });
    assert.ok(r.ok, `PUT /_sim/faults: HTTP ${String(r.status)} ${await r.text()}`);
  }

  async function kubectlOk(args: readonly string[], input?: string): Promise<void> {
    const r = await cluster.kubectl(args, input);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  }

  /** Records (and logs) what a step got; never asserts: the invariants are checked at the end. */
  function record(attack: string, step: string, a: ApiAnswer | { code: number; stderr: string; stdout: string }): StepResult {
    const result: StepResult =
      'status' in a
        ? { attack, step, status: a.status, message: short([a.status >= 300 ? statusMessage(a) : 'ok', ...a.warnings].join(' | ')) }
        : { attack, step, status: a.code === 0 ? 'ok' : `exit ${String(a.code)}`, message: short(`${a.stdout.trim()} ${a.stderr.trim()}`) };
    steps.push(result);
    log(`[${attack}] ${step}: ${String(result.status)} ${result.message}`);
    return result;
  }

  async function pods(namespace = NS): Promise<PodItem[]> {
    return (await api.json<{ items: PodItem[] }>(`/api/v1/namespaces/${namespace}/pods`)).items;
  }

  /** Pods whose name starts with `prefix` (all of them for '') that run a failing image. */
  async function failingPods(prefix = ''): Promise<string[]> {
    return (await pods())
      .filter((p) => p.metadata.name.startsWith(prefix))
      .filter((p) => imagesOfPod(p).some(isFailing))
      .map((p) => `${p.metadata.name} (${imagesOfPod(p).filter(isFailing).join(', ')})`);
  }

  /** Refusals by scangate of objects whose name starts with `prefix`: event name -> count. */
  async function refusals(prefix: string): Promise<Map<string, number>> {
    const events = (await api.json<{ items: EventItem[] }>(`/api/v1/namespaces/${NS}/events`)).items;
    const out = new Map<string, number>();
    for (const e of events) {
      if (!(e.involvedObject?.name ?? '').startsWith(prefix)) continue;
      if (!/denied the request|failed calling webhook/.test(e.message ?? '')) continue;
      out.set(e.metadata.name, e.count ?? 1);
    }
    return out;
  }

  /**
   * After an attack's last step: waits until a pod of a failing image appears under `prefix` (a
   * breach), or the controllers were refused again after `before` and at least `minMs` passed (they
   * tried the last template), or `maxMs` passed. Returns the failing pods found.
   */
  async function settle(prefix: string, before: Map<string, number>, minMs: number, maxMs: number): Promise<{ outcome: string; failing: string[] }> {
    const started = performance.now();
    let refusedAgain = false;
    for (;;) {
      const found = await failingPods(prefix);
      if (found.length > 0) return { outcome: 'breach', failing: found };
      if (!refusedAgain) {
        const now = await refusals(prefix);
        refusedAgain = [...now].some(([name, count]) => count > (before.get(name) ?? 0));
      }
      const elapsed = performance.now() - started;
      if (refusedAgain && elapsed >= minMs) return { outcome: 'its controller was refused again', failing: [] };
      if (elapsed >= maxMs) return { outcome: 'no new pod and no new refusal', failing: [] };
      await sleep(1000);
    }
  }

  /**
   * The High 1 recipe on one workload: (1) created with ten new passing images and the failing one
   * last (the 11th new image of the review: deferred, admitted with a warning); (2) the break-glass
   * annotation on the workload's own metadata (a metadata-only change: never sent); (3) the same
   * annotation into the template, images unchanged (plus `extraTemplateAnnotations`: a forged or
   * copied proof); (4) Jobs un-suspended, CronJobs un-suspended and a Job made from them by hand.
   * Returns the pods of failing images that resulted.
   */
  async function templateAttack(
    attack: string,
    kind: Kind,
    name: string,
    opts: { reason?: string; extraTemplateAnnotations?: Record<string, string>; failingAsInit?: boolean } = {},
  ): Promise<string[]> {
    const glassReason = opts.reason ?? `INC-${attack} prod down`;
    const info = KINDS[kind];
    const fillers = Array.from({ length: 10 }, (_, i) => `mallory/filler:${name}-${String(i)}`);
    const bad = failing(name);
    // Init containers are judged first: there, the failing image is the last of eleven init containers.
    const list =
      opts.failingAsInit === true
        ? { containers: containers([`mallory/filler:${name}-main`]), initContainers: [...fillers, bad].map((image, i) => ({ name: `init${String(i)}`, image })) }
        : { containers: containers([...fillers, bad]) };
    const created = await api.call({ method: 'POST', path: info.base, body: workload(kind, name, podTemplate(name, kind, list)), as: TENANT });
    record(attack, `1. create ${kind} with ten new images and ${bad} last (deferred)`, created);
    if (created.status >= 300) return [];
    const path = `${info.base}/${name}`;
    record(attack, `2. ${GLASS} on the ${kind}'s own metadata`, await api.call({ method: 'PATCH', path, body: { metadata: { annotations: { [GLASS]: glassReason } } }, as: TENANT }));
    const before = await refusals(name);
    const annotations = { [GLASS]: glassReason, ...(opts.extraTemplateAnnotations ?? {}) };
    const patched = await api.call({ method: 'PATCH', path, body: nest([...info.templatePath, 'metadata'], { annotations }), as: TENANT });
    record(attack, `3. ${Object.keys(annotations).join(' + ')} into the template, images unchanged`, patched);
    let maxMs = 45_000;
    if (kind === 'Job') {
      record(attack, '4. un-suspend the Job', await api.call({ method: 'PATCH', path, body: { spec: { suspend: false } }, as: TENANT }));
    }
    if (kind === 'CronJob') {
      record(attack, '4a. kubectl create job --from=cronjob', await cluster.kubectl([`--as=${TENANT}`, '-n', NS, 'create', 'job', `--from=cronjob/${name}`, `${name}-manual`]));
      record(attack, '4b. un-suspend the CronJob (every minute)', await api.call({ method: 'PATCH', path, body: { spec: { suspend: false } }, as: TENANT }));
      maxMs = 80_000;
    }
    // The controllers act within seconds; a minute boundary for the CronJob.
    const settled = await settle(name, before, kind === 'CronJob' ? 70_000 : 12_000, maxMs);
    log(`[${attack}] after the last step: ${settled.outcome}${settled.failing.length > 0 ? `: ${settled.failing.join('; ')}` : ''}`);
    return settled.failing;
  }

  /** The admin's pod in the victim namespace: a new image each time (so a scan is needed), ~5 KB. */
  function victimPod(name: string, image: string): Record<string, unknown> {
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: VICTIM_NS,
        labels: { app: 'victim', tier: 'web' },
        annotations: { 'example.com/owner': 'platform-team', 'example.com/runbook': `https://runbooks.example.com/victim/${'r'.repeat(3000)}` },
      },
      spec: { containers: [{ name: 'app', image, ports: [{ containerPort: 8080 }], env: [{ name: 'MODE', value: 'production' }] }] },
    };
  }

  interface Victim {
    readonly name: string;
    readonly status: number;
    readonly ms: number;
    readonly message: string;
  }

  async function victimCreate(label: string): Promise<Victim> {
    seq += 1;
    const slug = `${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${String(seq)}`;
    const name = `victim-${slug}`;
    const a = await api.call({ method: 'POST', path: `/api/v1/namespaces/${VICTIM_NS}/pods`, body: victimPod(name, `victim/app:${slug}`), timeoutMs: 60_000 });
    return { name, status: a.status, ms: Math.round(a.durationMs), message: a.status === 201 ? '' : short(statusMessage(a), 300) };
  }

  /** Baseline: a warm-up, then five creations one after the other; the slowest is the baseline. */
  async function baseline(label: string): Promise<number> {
    await victimCreate(`${label}-warm`);
    const samples: Victim[] = [];
    for (let i = 0; i < 5; i++) samples.push(await victimCreate(`${label}-base`));
    log(`[${label}] baseline: ${samples.map((s) => `${String(s.status)}/${String(s.ms)} ms`).join(', ')}`);
    for (const s of samples) assert.equal(s.status, 201, `baseline pod ${s.name}: ${s.message}`);
    return Math.max(...samples.map((s) => s.ms));
  }

  /**
   * The admin creates pods one after another (a new image each) until `untilMs` (performance.now()) or
   * `count` pods; each must be created, and within VICTIM_SLACK_MS of `base`.
   */
  async function victimsDuring(label: string, base: number, untilMs: number, count: number): Promise<string[]> {
    const problems: string[] = [];
    const seen: string[] = [];
    for (let i = 0; i < count && performance.now() < untilMs; i++) {
      const v = await victimCreate(label);
      seen.push(`${String(v.status)}/${String(v.ms)} ms`);
      if (v.status !== 201) problems.push(`${v.name}: HTTP ${String(v.status)} after ${String(v.ms)} ms: ${v.message}`);
      else if (v.ms > base + VICTIM_SLACK_MS) problems.push(`${v.name}: created after ${String(v.ms)} ms, more than ${String(VICTIM_SLACK_MS)} ms over the baseline ${String(base)} ms`);
      await sleep(500);
    }
    log(`[${label}] victim during the attack (baseline ${String(base)} ms): ${seen.join(', ')}`);
    // A window too short to say anything is no pass (unless the victims already failed).
    if (problems.length === 0) assert.ok(seen.length >= 3, `[${label}] only ${String(seen.length)} victim creations fitted in the attack window`);
    return problems;
  }

  /** Creates `body` (a pod of the tenant) and resolves with the answer; never rejects. */
  function tenantPod(body: Record<string, unknown>, timeoutMs = 60_000): Promise<ApiAnswer> {
    return api.call({ method: 'POST', path: `/api/v1/namespaces/${NS}/pods`, body, as: TENANT, timeoutMs }).catch((err: unknown): ApiAnswer => ({ status: 0, text: String(err), durationMs: 0, warnings: [] }));
  }

  function tenantPodBody(name: string, images: readonly string[], env?: ContainerSpec['env']): Record<string, unknown> {
    return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: NS }, spec: { containers: containers(images, env) } };
  }

  async function metric(name: string): Promise<string> {
    const r = await cluster.getScangate('/metrics').catch(() => ({ status: 0, body: '' }));
    return r.body
      .split('\n')
      .filter((l) => l.startsWith(name))
      .join('; ');
  }

  before(
    async () => {
      cluster = new Cluster();
      log(`state directory ${cluster.runDir}`);
      keyFile = join(cluster.localDir, 'break-glass.key');
      writeFileSync(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
      try {
        await setUp(cluster, baseEnv());
        await register();
        api = await ApiClient.fromKubeconfig(cluster.kubeconfig, cluster.env());
        await simFaults({});
        await kubectlOk(['create', 'namespace', NS]);
        await kubectlOk(['label', 'namespace', NS, 'scangate.io/mode=enforce']);
        await kubectlOk(['create', 'namespace', VICTIM_NS]);
        for (const user of [TENANT, ALLOWED]) await kubectlOk(['-n', NS, 'create', 'rolebinding', `${user}-edit`, '--clusterrole=edit', `--user=${user}`]);
        // `edit` does not cover pods/ephemeralcontainers (kubectl debug): a namespace admin who lets the
        // tenant debug grants it on its own, which is what the ephemeral-container attempts need.
        await kubectlOk(['-n', NS, 'create', 'role', 'debugger', '--verb=get,patch,update', '--resource=pods/ephemeralcontainers']);
        await kubectlOk(['-n', NS, 'create', 'rolebinding', `${TENANT}-debugger`, '--role=debugger', `--user=${TENANT}`]);
        // A Node object for the DaemonSet controller (no kubelet behind it: its pods stay Pending).
        await kubectlOk(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: NODE, labels: { 'kubernetes.io/hostname': NODE } } }));
        // The API server taints a new Node not-ready (NoSchedule), which DaemonSet pods do not tolerate;
        // with no kubelet and no node-lifecycle controller, nothing would ever lift it.
        await kubectlOk(['taint', 'node', NODE, 'node.kubernetes.io/not-ready:NoSchedule-']);
        for (const ns of [NS, VICTIM_NS]) {
          await waitFor(`${ns}/default ServiceAccount`, MINUTE, async () => ((await cluster.kubectl(['-n', ns, 'get', 'serviceaccount', 'default'])).code === 0 ? true : undefined));
        }
        // `edit` is an aggregated ClusterRole: its rules appear once clusterrole-aggregation-controller ran.
        await waitFor('mallory to hold edit in adv', MINUTE, async () => {
          const r = await cluster.kubectl(['auth', 'can-i', 'create', 'deployments.apps', '-n', NS, `--as=${TENANT}`]);
          return r.stdout.trim() === 'yes' ? true : undefined;
        });
        // The tenant's namespace is enforced: the API server sees the label.
        await waitFor('the enforce entry to be used for adv', MINUTE, async () => {
          const r = await cluster.kubectl(['-n', NS, 'run', 'probe', '--image=nginx', '--dry-run=server']);
          return r.stderr.includes('admission webhook "enforce.images.scangate.io" denied the request') ? true : undefined;
        });
        const can = await cluster.kubectl(['auth', 'can-i', '--list', '-n', NS, `--as=${TENANT}`]);
        log(`mallory's rights in ${NS}:\n${can.stdout.split('\n').slice(0, 60).join('\n')}`);
      } catch (err) {
        failed = true;
        log(`set-up FAILED: ${String(err)}`);
        log(await cluster.diagnostics());
        throw err;
      }
    },
    { timeout: 50 * MINUTE },
  );

  after(
    async () => {
      if (steps.length > 0) log(`every step the tenant tried:\n${steps.map((s) => `  [${s.attack}] ${s.step}: ${String(s.status)} ${s.message}`).join('\n')}`);
      api?.close();
      await tearDown(cluster, failed);
    },
    { timeout: 3 * MINUTE },
  );

  scenario(
    'A. break-glass that nobody granted, on every kind, bare pods and ephemeral containers: no pod of a failing image results',
    async () => {
      const breaches: string[] = [];
      // An allowed person's break-glass, for one image set: the proof (if this build writes one) that
      // the tenant will copy onto another image set. replicas 0: the template is all that is needed.
      const aliceImage = failing('alice-approved'); // in ALLOWED_IMAGES
      const aliceReason = 'INC-4711 checkout down';
      const aliceTemplate = podTemplate('alice-glass', 'Deployment', { containers: containers([aliceImage]) }, { [GLASS]: aliceReason });
      const alice = await api.call({
        method: 'POST',
        path: KINDS.Deployment.base,
        body: { ...workload('Deployment', 'alice-glass', aliceTemplate), spec: { replicas: 0, selector: { matchLabels: { app: 'alice-glass' } }, template: aliceTemplate } },
        as: ALLOWED,
      });
      record('copied proof', `alice creates a Deployment breaking glass for ${aliceImage} (replicas 0)`, alice);
      assert.equal(alice.status, 201, `an allowed person's break-glass is admitted: ${statusMessage(alice)}`);
      const aliceStored = await api.json<{ spec: { template: PodTemplate } }>(`${KINDS.Deployment.base}/alice-glass`);
      const copied = aliceStored.spec.template.metadata.annotations[PROOF];
      log(`[copied proof] alice's template carries ${copied === undefined ? `no ${PROOF} (this build writes none)` : `${PROOF} (${String(copied.length)} characters)`}`);
      const forged = `v1.${Buffer.from(JSON.stringify({ ns: NS, images: [failing('forged')], reason: 'x', user: ALLOWED, exp: 4102444800 })).toString('base64url')}.${randomBytes(32).toString('hex')}`;

      const attacks: Array<Promise<{ attack: string; failing: string[] }>> = [];
      const launch = (attack: string, p: Promise<string[]>): void => {
        attacks.push(p.then((found) => ({ attack, failing: found })));
      };
      const kinds: ReadonlyArray<readonly [Kind, string]> = [
        ['Deployment', 'a-deploy'],
        ['StatefulSet', 'a-sts'],
        ['DaemonSet', 'a-ds'],
        ['ReplicaSet', 'a-rs'],
        ['ReplicationController', 'a-rc'],
        ['Job', 'a-job'],
        ['CronJob', 'a-cron'],
      ];
      for (const [kind, name] of kinds) launch(`${kind}: deferred, then metadata, then template`, templateAttack(kind, kind, name));
      launch('Deployment: init container', templateAttack('init container', 'Deployment', 'a-init', { failingAsInit: true }));
      launch('Deployment: hand-written proof', templateAttack('hand-written proof', 'Deployment', 'a-forged', { extraTemplateAnnotations: { [PROOF]: forged } }));
      launch(
        'Deployment: proof copied from alice onto other images',
        templateAttack('copied proof', 'Deployment', 'a-copy', { reason: aliceReason, extraTemplateAnnotations: { [PROOF]: copied ?? forged } }),
      );

      // Straight away, no deferral: the copied proof with the same reason on a superset of alice's images.
      const copyTemplate = podTemplate('a-direct-copy', 'Deployment', { containers: containers([aliceImage, failing('a-direct-copy')]) }, {
        [GLASS]: aliceReason,
        [PROOF]: copied ?? forged,
      });
      record('copied proof', 'create a Deployment with the copied proof on alice\'s image plus another', await api.call({ method: 'POST', path: KINDS.Deployment.base, body: workload('Deployment', 'a-direct-copy', copyTemplate), as: TENANT }));
      launch('Deployment: copied proof, created directly', settle('a-direct-copy', new Map(), 12_000, 30_000).then((s) => s.failing));

      // Bare pods and ephemeral containers.
      const podAttack = async (): Promise<string[]> => {
        const attack = 'bare pod';
        const pod = 'a-pod';
        // The workload attacks above may hold this namespace's scan slots (a per-namespace bound):
        // the passing pod is retried until its scan can start (bounded).
        const create = (): Promise<ApiAnswer> => api.call({ method: 'POST', path: `/api/v1/namespaces/${NS}/pods`, body: tenantPodBody(pod, ['mallory/filler:a-pod']), as: TENANT });
        let made = await create();
        const until = performance.now() + 90_000;
        while (made.status === 403 && /not started yet|still in progress/.test(statusMessage(made)) && performance.now() < until) {
          await sleep(2000);
          made = await create();
        }
        record(attack, 'create a pod with a passing image', made);
        if (made.status >= 300) return failingPods('a-pod');
        const podPath = `/api/v1/namespaces/${NS}/pods/${pod}`;
        record(attack, `${GLASS} on the pod's metadata`, await api.call({ method: 'PATCH', path: podPath, body: { metadata: { annotations: { [GLASS]: 'INC-1 pod', [PROOF]: forged } } }, as: TENANT }));
        record(attack, `set image to ${failing('a-pod')}`, await api.call({ method: 'PATCH', path: podPath, body: [{ op: 'replace', path: '/spec/containers/0/image', value: failing('a-pod') }], patchType: 'json', as: TENANT }));
        record(
          'ephemeral container',
          `kubectl debug with ${failing('a-debug')}`,
          await cluster.kubectl([`--as=${TENANT}`, '-n', NS, 'debug', pod, `--image=${failing('a-debug')}`, '--container=dbg', '--profile=general']),
        );
        const current = await api.json<PodItem & { spec: { ephemeralContainers?: unknown[] } }>(podPath);
        const ephemeral = {
          ...current,
          spec: { ...current.spec, ephemeralContainers: [...(current.spec.ephemeralContainers ?? []), { name: 'dbg2', image: failing('a-debug-2'), targetContainerName: 'c0' }] },
        };
        record('ephemeral container', 'PUT pods/ephemeralcontainers (pod carries break-glass and a proof)', await api.call({ method: 'PUT', path: `${podPath}/ephemeralcontainers`, body: ephemeral, as: TENANT }));
        const glassPod = (name: string, field: 'containers' | 'initContainers'): Record<string, unknown> => ({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name, namespace: NS, annotations: { [GLASS]: 'INC-2', [PROOF]: forged } },
          spec: { containers: containers(['mallory/filler:a-pod']), ...(field === 'initContainers' ? { initContainers: [{ name: 'init', image: failing(name) }] } : {}) },
        });
        const withFailing = glassPod('a-pod-forged', 'containers');
        (withFailing['spec'] as { containers: ContainerSpec[] }).containers = containers([failing('a-pod-forged')]);
        record(attack, 'create a pod with break-glass and a hand-written proof', await api.call({ method: 'POST', path: `/api/v1/namespaces/${NS}/pods`, body: withFailing, as: TENANT }));
        record(attack, 'create a pod whose init container fails, with break-glass and a proof', await api.call({ method: 'POST', path: `/api/v1/namespaces/${NS}/pods`, body: glassPod('a-pod-init', 'initContainers'), as: TENANT }));
        const copiedPod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a-pod-copied', namespace: NS, annotations: { [GLASS]: aliceReason, [PROOF]: copied ?? forged } }, spec: { containers: containers([failing('a-pod-copied')]) } };
        record(attack, 'create a pod with the proof copied from alice, other image', await api.call({ method: 'POST', path: `/api/v1/namespaces/${NS}/pods`, body: copiedPod, as: TENANT }));
        return failingPods('a-pod');
      };
      launch('bare pods and ephemeral containers', podAttack());

      for (const r of await Promise.all(attacks)) {
        if (r.failing.length > 0) breaches.push(`${r.attack}: ${r.failing.join('; ')}`);
      }
      const all = await failingPods();
      log(`failing pods in ${NS} after A: ${all.length === 0 ? 'none' : all.join('; ')}`);
      for (const p of all) if (!breaches.some((b) => b.includes(p))) breaches.push(`(found at the end) ${p}`);
      assert.deepEqual(breaches, [], `pods of failing images exist in the enforce namespace, nobody allowed having broken glass for them:\n  ${breaches.join('\n  ')}`);
    },
    15 * MINUTE,
  );

  scenario(
    'B. the vetting point failing open: a review past the body limit, the workload entry unreachable: no pod of a failing image',
    async () => {
      const breaches: string[] = [];
      // B1: 600 000 `<` in an env value (3.6 MB in the review: under 4 MiB, so the pods are judged) and
      // 200 000 in an annotation of the Deployment itself (1.2 MB more: its review passes 4 MiB).
      const name = 'b-big';
      const bad = failing(name);
      const template = podTemplate(name, 'Deployment', { containers: containers([bad], [{ name: 'NOTES', value: '<'.repeat(600_000) }]) }, { [GLASS]: 'INC-big' });
      const before1 = await refusals(name);
      const big = await api.call({ method: 'POST', path: KINDS.Deployment.base, body: workload('Deployment', name, template, { 'example.com/notes': '<'.repeat(200_000) }), as: TENANT });
      record('body limit', `create a Deployment (${String(Math.round(JSON.stringify(template).length / 1000))} kB template, <-heavy) breaking glass for ${bad}`, big);
      log(`[body limit] scangate: ${await metric('scangate_decisions_total{endpoint="validate",result="bad_request"}')}`);
      if (big.status < 300) {
        const s = await settle(name, before1, 15_000, 45_000);
        log(`[body limit] ${s.outcome}`);
        if (s.failing.length > 0) breaches.push(`body limit: ${s.failing.join('; ')}`);
      }

      // B2: the workload entry (failurePolicy Ignore) unreachable while the tenant creates the
      // Deployment; scangate back before its pods are judged.
      const down = 'b-down';
      const badDown = failing(down);
      await cluster.scangate?.stop();
      let created: ApiAnswer | undefined;
      try {
        const t = podTemplate(down, 'Deployment', { containers: containers([badDown]) }, { [GLASS]: 'INC-down' });
        created = await api.call({ method: 'POST', path: KINDS.Deployment.base, body: workload('Deployment', down, t), as: TENANT });
        record('entry unreachable', `create a Deployment breaking glass for ${badDown} while scangate is down`, created);
        if (created.status < 300) {
          await waitFor('the ReplicaSet of b-down', 30_000, async () => {
            const r = await api.json<{ items: unknown[] }>(`/apis/apps/v1/namespaces/${NS}/replicasets?labelSelector=app%3D${down}`);
            return r.items.length > 0 ? true : undefined;
          }).catch((err: unknown) => log(`[entry unreachable] ${String(err)}`));
        }
      } finally {
        await cluster.startScangate(baseEnv());
        await register();
      }
      if (created !== undefined && created.status < 300) {
        const s = await settle(down, new Map(), 15_000, 60_000);
        log(`[entry unreachable] ${s.outcome}`);
        if (s.failing.length > 0) breaches.push(`workload entry unreachable: ${s.failing.join('; ')}`);
      }
      assert.deepEqual(breaches, [], `the tenant's failing images run:\n  ${breaches.join('\n  ')}`);
    },
    8 * MINUTE,
  );

  /**
   * One starvation scenario: a fresh scangate, the victim's baseline, then `attack` (started, not
   * awaited), then the victim's creations for `windowMs` after `settleMs`. The attack's requests are
   * awaited (bounded by their timeouts) before returning.
   */
  async function starvation(label: string, attack: () => Promise<unknown>, opts: { settleMs: number; windowMs: number; extraEnv?: Record<string, string> }): Promise<void> {
    await restartScangate(opts.extraEnv ?? {});
    const base = await baseline(label);
    const started = performance.now();
    const running = attack();
    await sleep(opts.settleMs);
    const problems = await victimsDuring(label, base, started + opts.settleMs + opts.windowMs, 12);
    log(`[${label}] scangate: ${await metric('scangate_overload_refusals_total')} ${await metric('scangate_scans_in_progress')} ${await metric('scangate_scanner_circuit_transitions_total')}`);
    await running;
    assert.deepEqual(problems, [], `[${label}] the cluster admin's pod creations in ${VICTIM_NS} failed or slowed while the tenant attacked:\n  ${problems.join('\n  ')}`);
  }

  scenario(
    'C1. eight ~4 MiB reviews naming an image that never finishes analysis (the body budget): the admin\'s pods elsewhere are still created, within 1 s of their baseline',
    async () => {
      let n = 0;
      const hog = (chars: number): Promise<ApiAnswer> => {
        n += 1;
        return tenantPod(tenantPodBody(`c1-hog-${String(n)}`, [slow('hog')], [{ name: 'PAD', value: '<'.repeat(chars) }]));
      };
      await starvation(
        'C1 body budget',
        async () => {
          // Eight reviews of ~4.14 MB (690 000 `<`, six bytes each in the review, under MAX_BODY_BYTES
          // 4 MiB), then ever smaller ones, each held while it fits: the budget (32 MiB) is filled to
          // within a few kB, whatever the exact overhead of a review.
          const held: Array<Promise<ApiAnswer>> = [];
          for (let i = 0; i < 8; i++) held.push(hog(690_000));
          await sleep(3000);
          for (let chars = 1 << 17; chars >= 128; chars >>= 1) {
            held.push(hog(chars));
            await sleep(400);
          }
          const answers = await Promise.all(held);
          log(`[C1 body budget] tenant answers: ${answers.map((a) => `${String(a.status)}/${String(Math.round(a.durationMs))} ms`).join(', ')}`);
        },
        { settleMs: 3000 + 11 * 400 + 500, windowMs: 18_000 },
      );
    },
    5 * MINUTE,
  );

  scenario(
    'C2. ten reviews of ten new images each that never finish analysis (the scan slots): the admin\'s pods elsewhere are still created, within 1 s of their baseline',
    async () => {
      await starvation(
        'C2 scan slots',
        async () => {
          const reviews = Array.from({ length: 10 }, (_, r) => tenantPod(tenantPodBody(`c2-${String(r)}`, Array.from({ length: 10 }, (_, i) => slow(`c2-${String(r)}-${String(i)}`)))));
          const answers = await Promise.all(reviews);
          log(`[C2 scan slots] tenant answers: ${answers.map((a) => `${String(a.status)}/${String(Math.round(a.durationMs))} ms`).join(', ')}`);
        },
        { settleMs: 3000, windowMs: 20_000 },
      );
    },
    5 * MINUTE,
  );

  scenario(
    'C3. one /mutate review with 100 new images that never finish analysis (pinning on): the admin\'s pods elsewhere are still created, within 1 s of their baseline',
    async () => {
      try {
        await starvation(
          'C3 mutate',
          async () => {
            const a = await tenantPod(tenantPodBody('c3-many', Array.from({ length: 100 }, (_, i) => slow(`c3-${String(i)}`))));
            log(`[C3 mutate] tenant answer: ${String(a.status)} after ${String(Math.round(a.durationMs))} ms: ${short(statusMessage(a), 200)}`);
          },
          { settleMs: 3000, windowMs: 20_000, extraEnv: { PIN_DIGESTS: 'true' } },
        );
      } finally {
        await restartScangate();
      }
    },
    5 * MINUTE,
  );

  scenario(
    'C4. the tenant slows its own registry so that scans of its images time out (the breaker): the admin\'s pods elsewhere are still created, within 1 s of their baseline',
    async () => {
      try {
        await starvation(
          'C4 breaker',
          async () => {
            // Three rounds, 8 s apart: the "registry" answers the scanner's image add for the tenant's
            // five new images after 7 s (past SCANNER_REQUEST_TIMEOUT_MS 5 s); `times: 5` keeps the
            // delay to those five calls, so the admin's own scans are answered at once.
            const answers: Array<Promise<ApiAnswer>> = [];
            for (let round = 0; round < 3; round++) {
              await simFaults({ latencyMs: 7000, operations: ['addImage'], times: 5 });
              // A registry host of the tenant's own (not docker.io, which the admin's images share).
              answers.push(tenantPod(tenantPodBody(`c4-${String(round)}`, Array.from({ length: 5 }, (_, i) => `registry.mallory.example/app:c4-${String(round)}-${String(i)}`))));
              await sleep(8000);
            }
            const got = await Promise.all(answers);
            log(`[C4 breaker] tenant answers: ${got.map((a) => `${String(a.status)}/${String(Math.round(a.durationMs))} ms`).join(', ')}`);
          },
          { settleMs: 2000, windowMs: 22_000 },
        );
      } finally {
        await simFaults({});
        // The breaker this left open (on a build where the tenant can open it) must not judge D.
        await restartScangate();
      }
    },
    5 * MINUTE,
  );

  scenario(
    'D. other hostile combinations: namespace labels, image volumes, dry runs',
    async () => {
      const breaches: string[] = [];
      // The tenant cannot switch its namespace's mode (edit has no namespace patch).
      const label = await cluster.kubectl([`--as=${TENANT}`, 'label', 'namespace', NS, 'scangate.io/mode=off', '--overwrite']);
      record('namespace label', 'label its namespace scangate.io/mode=off', label);
      if (label.code === 0) breaches.push('the tenant relabelled its namespace');

      // An image volume naming a failing image, beside a passing container.
      const volumePod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'd-volume', namespace: NS },
        spec: {
          containers: [{ name: 'c0', image: 'mallory/filler:d-volume', volumeMounts: [{ name: 'tools', mountPath: '/tools' }] }],
          volumes: [{ name: 'tools', image: { reference: failing('d-volume'), pullPolicy: 'IfNotPresent' } }],
        },
      };
      record('image volume', `create a pod with an image volume of ${failing('d-volume')}`, await api.call({ method: 'POST', path: `/api/v1/namespaces/${NS}/pods`, body: volumePod, as: TENANT }));

      // A dry run is judged like the real thing (nothing is stored either way).
      const dry = await api.call({ method: 'POST', path: `/api/v1/namespaces/${NS}/pods?dryRun=All`, body: tenantPodBody('d-dry', [failing('d-dry')]), as: TENANT });
      record('dry run', `dry-run create of ${failing('d-dry')}`, dry);
      if (dry.status < 300) breaches.push('a dry run of a failing image was admitted');

      const found = await failingPods('d-');
      for (const p of found) breaches.push(p);
      assert.deepEqual(breaches, [], `hostile combinations that got through:\n  ${breaches.join('\n  ')}`);
    },
    3 * MINUTE,
  );

  scenario(
    'E. the proof design attacked: alice\'s proof on a pod whose image then changes, on another digest of her image, on her own Deployment with its image changed',
    async () => {
      const breaches: string[] = [];
      const attack = 'proof reuse';
      const image = failing('alice-e');
      const glassReason = 'INC-5000 payments down';
      const template = podTemplate('alice-e', 'Deployment', { containers: containers([image]) }, { [GLASS]: glassReason });
      const created = await api.call({
        method: 'POST',
        path: KINDS.Deployment.base,
        body: { ...workload('Deployment', 'alice-e', template), spec: { replicas: 0, selector: { matchLabels: { app: 'alice-e' } }, template } },
        as: ALLOWED,
      });
      record(attack, `alice creates a Deployment breaking glass for ${image} (replicas 0)`, created);
      assert.equal(created.status, 201, statusMessage(created));
      const stored = await api.json<{ spec: { template: PodTemplate } }>(`${KINDS.Deployment.base}/alice-e`);
      const proof = stored.spec.template.metadata.annotations[PROOF] ?? 'none';
      const annotations = { [GLASS]: glassReason, [PROOF]: proof };
      const podBody = (name: string, images: readonly string[]): Record<string, unknown> => ({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: NS, annotations },
        spec: { containers: containers(images) },
      });
      const podsPath = `/api/v1/namespaces/${NS}/pods`;

      // 1. Her exact images and reason in a pod of the tenant (what she allowed: may be admitted), then
      //    the pod's image changed, then an ephemeral container added: each a new failing image.
      const copy = await api.call({ method: 'POST', path: podsPath, body: podBody('e-copy', [image]), as: TENANT });
      record(attack, "a pod with alice's images, reason and proof", copy);
      if (copy.status < 300) {
        record(attack, `then its image changed to ${failing('e-upd')}`, await api.call({ method: 'PATCH', path: `${podsPath}/e-copy`, body: [{ op: 'replace', path: '/spec/containers/0/image', value: failing('e-upd') }], patchType: 'json', as: TENANT }));
        const current = await api.json<PodItem & { spec: { ephemeralContainers?: unknown[] } }>(`${podsPath}/e-copy`);
        const withDebug = { ...current, spec: { ...current.spec, ephemeralContainers: [...(current.spec.ephemeralContainers ?? []), { name: 'dbg', image: failing('e-eph'), targetContainerName: 'c0' }] } };
        record(attack, `then an ephemeral container of ${failing('e-eph')}`, await api.call({ method: 'PUT', path: `${podsPath}/e-copy/ephemeralcontainers`, body: withDebug, as: TENANT }));
      }

      // 2. Her tag, but another digest: another image.
      const otherDigest = `${image}@sha256:${'ab'.repeat(32)}`;
      record(attack, "a pod with alice's proof and reason on her tag at another digest", await api.call({ method: 'POST', path: podsPath, body: podBody('e-digest', [otherDigest]), as: TENANT }));

      // 3. Her own Deployment (the tenant may edit it): its image changed, scaled up.
      const before = await refusals('alice-e');
      const changed = await api.call({
        method: 'PATCH',
        path: `${KINDS.Deployment.base}/alice-e`,
        body: { spec: { replicas: 1, template: { spec: { containers: [{ name: 'c0', image: failing('e-o1') }] } } } },
        patchType: 'strategic',
        as: TENANT,
      });
      record(attack, `alice's Deployment: image changed to ${failing('e-o1')}, scaled to 1`, changed);
      if (changed.status < 300) {
        const s = await settle('alice-e', before, 12_000, 45_000);
        log(`[${attack}] alice's changed Deployment: ${s.outcome}`);
      }
      // The same Deployment scaled without a change: her own image may run (not a breach).
      const found = [...(await failingPods('e-')), ...(await failingPods('alice-e'))];
      for (const p of found) breaches.push(p);
      assert.deepEqual(breaches, [], `alice's proof let other images in:\n  ${breaches.join('\n  ')}`);
    },
    5 * MINUTE,
  );

  scenario('Z. at the end, no pod of a failing image exists in the enforce namespace', async () => {
    const found = await failingPods();
    const all = await pods();
    log(`pods in ${NS}: ${all.map((p) => `${p.metadata.name} [${imagesOfPod(p).join(', ')}]`).join('; ') || 'none'}`);
    assert.deepEqual(found, [], `pods of failing images in ${NS}:\n  ${found.join('\n  ')}`);
  });
});

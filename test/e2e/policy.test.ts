/**
 * End-to-end against kube-apiserver (local-cluster.ts): images changed on a running pod (issue 7 §1),
 * workload templates judged at `kubectl apply` (issue 10 §1), per-namespace modes through the
 * `scangate.io/mode` label and one webhook entry per mode (issue 10 §2).
 *
 * The local control plane has no kubelet: pods stay Pending, which is all this needs (the API server
 * accepts image updates of a Pending pod just as of a running one).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe } from 'node:test';
import { scenarios, waitFor } from './harness.js';
import { CLEAN, Cluster, escapeRe, log, MINUTE, setUp, skipReason, STRUTS, tearDown } from './local-cluster.js';

const reason = skipReason();

/** `admission webhook "<entry>" denied the request: `, for the entry of a mode ('' = the default). */
const deniedBy = (entry: string): string => `admission webhook "${entry}" denied the request: `;
const POLICY_FAIL = 'Image failed policy check';
const LATEST = 'Images using latest tag are not allowed';

describe('e2e policy: pod updates, workload templates, per-namespace modes', { skip: reason ?? false }, () => {
  let cluster: Cluster;
  const suite = scenarios(log, () => cluster.diagnostics(), 5 * MINUTE);
  const { scenario } = suite;

  before(
    async () => {
      cluster = new Cluster();
      log(`state directory ${cluster.runDir}`);
      try {
        await setUp(cluster);
        await cluster.registerWebhook();
      } catch (err) {
        suite.failed = true;
        log(`set-up FAILED: ${String(err)}`);
        log(await cluster.diagnostics());
        throw err;
      }
    },
    { timeout: 50 * MINUTE },
  );

  after(() => tearDown(cluster, suite.failed), { timeout: 2 * MINUTE });

  /** The image of container `name` of pod `pod` as the API server stores it. */
  async function podImage(namespace: string, pod: string, field: 'containers' | 'initContainers', name: string): Promise<string> {
    const r = await cluster.kubectl(['-n', namespace, 'get', 'pod', pod, '-o', `jsonpath={.spec.${field}[?(@.name=="${name}")].image}`]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  }

  /** `kubectl apply` of a Deployment as `kubectl create deployment NAME --image=IMAGE` writes it. */
  async function applyDeployment(namespace: string, name: string, image: string) {
    const manifest = await cluster.kubectl(['-n', namespace, 'create', 'deployment', name, `--image=${image}`, '--dry-run=client', '-o', 'yaml']);
    assert.equal(manifest.code, 0, manifest.stderr);
    return cluster.kubectl(['-n', namespace, 'apply', '-f', '-'], manifest.stdout);
  }

  async function makeNamespace(name: string, mode: string | undefined): Promise<void> {
    const create = await cluster.kubectl(['create', 'namespace', name]);
    assert.equal(create.code, 0, create.stderr);
    if (mode !== undefined) {
      const label = await cluster.kubectl(['label', 'namespace', name, `scangate.io/mode=${mode}`]);
      assert.equal(label.code, 0, label.stderr);
    }
  }

  function decisionsIn(namespace: string): number {
    const logFile = cluster.scangate?.logFile;
    if (logFile === undefined) return 0;
    return readFileSync(logFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"msg":"decision"') && l.includes(`"namespace":"${namespace}"`)).length;
  }

  scenario('1. kubectl set image on a pod: the struts image and an untagged image are refused; a label change is admitted', async () => {
    const pod = 'set-image';
    const created = await cluster.createPod({
      name: pod,
      initContainers: [{ name: 'setup', image: 'busybox:1.36' }],
      containers: [{ name: 'web', image: CLEAN }],
    });
    assert.equal(created.code, 0, created.stderr);

    const struts = await cluster.kubectl(['-n', 'default', 'set', 'image', `pod/${pod}`, `web=${STRUTS}`]);
    log(`set image web=${STRUTS}: ${struts.stderr.trim()}`);
    assert.notEqual(struts.code, 0, 'an image update to a failing image must be refused');
    assert.match(struts.stderr, new RegExp(`${escapeRe(deniedBy('images.scangate.io'))}${POLICY_FAIL}: ${escapeRe(STRUTS)} \\(container "web"\\): vulnerabilities/package`));

    const untagged = await cluster.kubectl(['-n', 'default', 'set', 'image', `pod/${pod}`, 'web=nginx']);
    assert.notEqual(untagged.code, 0, 'an update to an untagged image must be refused');
    assert.match(untagged.stderr, new RegExp(`${escapeRe(deniedBy('images.scangate.io'))}${LATEST}: nginx \\(container "web"\\)`));

    const init = await cluster.kubectl(['-n', 'default', 'set', 'image', `pod/${pod}`, `setup=${STRUTS}`]);
    assert.notEqual(init.code, 0, 'an init container update must be refused too');
    assert.match(init.stderr, new RegExp(`${POLICY_FAIL}: ${escapeRe(STRUTS)} \\(init container "setup"\\)`));

    // A JSON patch is the same UPDATE as kubectl set image.
    const patch = await cluster.kubectl(['-n', 'default', 'patch', 'pod', pod, '--type=json', '-p', JSON.stringify([{ op: 'replace', path: '/spec/containers/0/image', value: 'nginx:latest' }])]);
    assert.notEqual(patch.code, 0, 'a JSON patch of the image must be refused');
    assert.match(patch.stderr, new RegExp(`${LATEST}: nginx:latest \\(container "web"\\)`));

    assert.equal(await podImage('default', pod, 'containers', 'web'), CLEAN, 'the pod still has its admitted image');
    assert.equal(await podImage('default', pod, 'initContainers', 'setup'), 'busybox:1.36');

    const label = await cluster.kubectl(['-n', 'default', 'label', 'pod', pod, 'tier=front']);
    assert.equal(label.code, 0, `a label change must be admitted: ${label.stderr}`);

    // The API server does let an image of a Pending pod change: a passing one goes through.
    const clean = await cluster.kubectl(['-n', 'default', 'set', 'image', `pod/${pod}`, 'web=bitnami/nginx:1.25']);
    assert.equal(clean.code, 0, `an update to a passing image must be admitted: ${clean.stderr}`);
    assert.equal(await podImage('default', pod, 'containers', 'web'), 'bitnami/nginx:1.25');

    // With scangate down, an update of metadata only is not even sent (matchConditions), so labels,
    // finalizers and owner references still change; an image change fails closed (failurePolicy Fail).
    await cluster.scangate?.stop();
    try {
      const down = await cluster.kubectl(['-n', 'default', 'annotate', 'pod', pod, 'note=scangate-down']);
      assert.equal(down.code, 0, `a metadata update must not depend on scangate: ${down.stderr}`);
      const blocked = await cluster.kubectl(['-n', 'default', 'set', 'image', `pod/${pod}`, `web=${CLEAN}`]);
      assert.notEqual(blocked.code, 0, 'an image change with scangate down is refused');
      assert.match(blocked.stderr, /failed calling webhook "images\.scangate\.io"/);
    } finally {
      await cluster.startScangate();
      await cluster.registerWebhook();
    }
  });

  scenario('2. kubectl apply: the struts Deployment is refused at once, nginx is created, set image to a failing image is refused', async () => {
    const struts = await applyDeployment('default', 'apply-struts', STRUTS);
    log(`kubectl apply (struts): ${struts.stderr.trim()}`);
    assert.notEqual(struts.code, 0, 'the struts Deployment must be refused at apply');
    assert.match(
      struts.stderr,
      new RegExp(`${escapeRe(deniedBy('workloads.scangate.io'))}${POLICY_FAIL}: ${escapeRe(STRUTS)} \\(deployment "apply-struts" container "apache-struts2-cve-2017-5638"\\): vulnerabilities/package`),
    );
    assert.notEqual((await cluster.kubectl(['-n', 'default', 'get', 'deployment', 'apply-struts'])).code, 0, 'no such Deployment');

    const nginx = await applyDeployment('default', 'apply-nginx', CLEAN);
    assert.equal(nginx.code, 0, nginx.stderr);
    assert.match(nginx.stdout, /deployment.apps\/apply-nginx created/);
    await waitFor('the apply-nginx ReplicaSet to create its pod', 2 * MINUTE, async () => {
      const names = await cluster.podNames('default', 'app=apply-nginx');
      return names.length > 0 ? names : undefined;
    });

    const setImage = await cluster.kubectl(['-n', 'default', 'set', 'image', 'deployment/apply-nginx', `nginx=${STRUTS}`]);
    assert.notEqual(setImage.code, 0, 'set image deployment/... to a failing image must be refused');
    assert.match(setImage.stderr, new RegExp(`${POLICY_FAIL}: ${escapeRe(STRUTS)} \\(deployment "apply-nginx" container "nginx"\\)`));
    const image = await cluster.kubectl(['-n', 'default', 'get', 'deployment', 'apply-nginx', '-o', 'jsonpath={.spec.template.spec.containers[0].image}']);
    assert.equal(image.stdout.trim(), CLEAN);

    // A scale changes no image: admitted without a scan.
    const scale = await cluster.kubectl(['-n', 'default', 'scale', 'deployment/apply-nginx', '--replicas=2']);
    assert.equal(scale.code, 0, scale.stderr);

    // Every other workload kind is judged the same way (refused at apply: their controllers never see them).
    const cron = await cluster.kubectl(['-n', 'default', 'create', 'cronjob', 'nightly', `--image=${STRUTS}`, '--schedule=0 3 * * *']);
    assert.notEqual(cron.code, 0);
    assert.match(cron.stderr, new RegExp(`${POLICY_FAIL}: ${escapeRe(STRUTS)} \\(cronjob "nightly" container "nightly"\\)`));
    const job = await cluster.kubectl(['-n', 'default', 'create', 'job', 'migrate', '--image=busybox']);
    assert.notEqual(job.code, 0);
    assert.match(job.stderr, new RegExp(`${LATEST}: busybox \\(job "migrate" container "migrate"\\)`));
    await cluster.kubectl(['-n', 'default', 'delete', 'deployment', 'apply-nginx', '--wait=false']);
  });

  scenario(
    '3. a workload whose scan does not finish in time is admitted with a warning; its pods are refused until the verdict',
    async () => {
      await cluster.registerWebhook(5);
      // The Deployment, then its ReplicaSet, each wait the workload entries' 4 s budget; the pods
      // that follow are refused until the verdict lands (16 s after the apply).
      await cluster.simAnalysisDelay(16_000);
      try {
        const image = 'nginx:1.25.6';
        const r = await applyDeployment('default', 'pending-scan', image);
        log(`kubectl apply (scan pending): ${String(Math.round(r.durationMs))} ms: ${r.stderr.trim()}`);
        assert.equal(r.code, 0, `a pending scan never refuses a workload: ${r.stderr}`);
        assert.match(
          r.stderr,
          new RegExp(`Warning: admitted without a verdict; its pods will be checked when they are created: Image scan still in progress: ${escapeRe(image)} \\(deployment "pending-scan" container "nginx"`),
        );
        assert.ok(r.durationMs < 5000 + 1500, `answered within the webhook timeout (${String(r.durationMs)} ms)`);
        await waitFor('the pending-scan pod once the verdict is in', 2 * MINUTE, async () => {
          const names = await cluster.podNames('default', 'app=pending-scan');
          return names.length > 0 ? names : undefined;
        });
        const uid = await cluster.replicaSetUid('default', 'pending-scan');
        assert.ok(uid !== undefined);
        const events = await cluster.eventsOf('default', uid);
        log(`pending-scan ReplicaSet events: ${JSON.stringify(events.map((e) => [e.reason, e.count, e.message]))}`);
        assert.ok(
          events.some((e) => e.reason === 'FailedCreate' && (e.message ?? '').includes(`Image scan still in progress: ${image}`)),
          'its pods were refused while the scan ran: the pod check is the enforcement point',
        );
      } finally {
        await cluster.simAnalysisDelay(0);
        await cluster.registerWebhook();
      }
      await cluster.kubectl(['-n', 'default', 'delete', 'deployment', 'pending-scan', '--wait=false']);
    },
    4 * MINUTE,
  );

  scenario('4. WORKLOAD_MODE=warn: kubectl apply warns; the pods are still refused (FailedCreate)', async () => {
    await cluster.restartScangate({ WORKLOAD_MODE: 'warn' });
    try {
      const r = await applyDeployment('default', 'warned-struts', STRUTS);
      assert.equal(r.code, 0, `WORKLOAD_MODE=warn admits the workload: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`Warning: ${POLICY_FAIL}: ${escapeRe(STRUTS)} \\(deployment "warned-struts" container`));
      const uid = await waitFor('the warned-struts ReplicaSet', MINUTE, () => cluster.replicaSetUid('default', 'warned-struts'));
      const denial = await waitFor('a FailedCreate event of its ReplicaSet', 2 * MINUTE, async () => {
        const events = await cluster.eventsOf('default', uid);
        return events.find((e) => e.reason === 'FailedCreate' && (e.message ?? '').includes(`${deniedBy('images.scangate.io')}${POLICY_FAIL}: ${STRUTS}`));
      });
      log(`FailedCreate: ${denial.message ?? ''}`);
      assert.deepEqual(await cluster.podNames('default', 'app=warned-struts'), []);
      await cluster.kubectl(['-n', 'default', 'delete', 'deployment', 'warned-struts', '--wait=false']);
    } finally {
      await cluster.restartScangate({});
    }
  });

  scenario('5. scangate.io/mode: the same failing image is denied in enforce, warned in warn, not judged in off; MODE elsewhere', async () => {
    const namespaces = { enforce: 'mode-enforce', warn: 'mode-warn', off: 'mode-off', none: 'mode-none', bogus: 'mode-bogus' };
    await makeNamespace(namespaces.none, undefined);
    await makeNamespace(namespaces.bogus, 'disabled');
    await makeNamespace(namespaces.enforce, 'enforce');
    await makeNamespace(namespaces.warn, 'warn');
    await makeNamespace(namespaces.off, 'off');
    const pod = (namespace: string, dryRun = false) =>
      cluster.createPod({ name: cluster.nextName('mode'), namespace, containers: [{ name: 'app', image: STRUTS }] }, dryRun);

    // The API server learns namespaces and their labels through an informer, in order: once it applies
    // the last label (off), it applies every earlier one.
    await waitFor('the API server to see the off label', MINUTE, async () => ((await pod(namespaces.off, true)).code === 0 ? true : undefined));
    const enforce = await pod(namespaces.enforce);
    assert.notEqual(enforce.code, 0);
    assert.match(enforce.stderr, new RegExp(`${escapeRe(deniedBy('enforce.images.scangate.io'))}${POLICY_FAIL}: ${escapeRe(STRUTS)} \\(container "app"\\)`));

    const warn = await pod(namespaces.warn);
    log(`warn namespace: ${warn.stdout.trim()} / ${warn.stderr.trim()}`);
    assert.equal(warn.code, 0, `a warn namespace admits: ${warn.stderr}`);
    assert.match(warn.stderr, new RegExp(`Warning: ${POLICY_FAIL}: ${escapeRe(STRUTS)} \\(container "app"\\)`));

    const before = decisionsIn(namespaces.off);
    const off = await pod(namespaces.off);
    assert.equal(off.code, 0, `an off namespace is not judged: ${off.stderr}`);
    assert.equal(off.stderr.trim(), '', 'no warning either');
    assert.equal(decisionsIn(namespaces.off), before, 'scangate never saw the request');

    // No label, or a value that is not a mode: the cluster default (MODE=enforce) applies.
    for (const namespace of [namespaces.none, namespaces.bogus]) {
      const r = await pod(namespace);
      assert.notEqual(r.code, 0, `${namespace} falls under MODE=enforce`);
      assert.match(r.stderr, new RegExp(`${escapeRe(deniedBy('images.scangate.io'))}${POLICY_FAIL}`));
    }

    // Workloads follow the namespace's mode as well.
    const warnedDeployment = await applyDeployment(namespaces.warn, 'web', STRUTS);
    assert.equal(warnedDeployment.code, 0, warnedDeployment.stderr);
    assert.match(warnedDeployment.stderr, new RegExp(`Warning: ${POLICY_FAIL}: ${escapeRe(STRUTS)} \\(deployment "web"`));
    const enforcedDeployment = await applyDeployment(namespaces.enforce, 'web', STRUTS);
    assert.notEqual(enforcedDeployment.code, 0);
    assert.match(enforcedDeployment.stderr, new RegExp(escapeRe(deniedBy('enforce.workloads.scangate.io'))));

    // MODE=warn changes the default namespaces only; a namespace labelled enforce stays enforced.
    await cluster.scangate?.stop();
    await cluster.startScangate({ MODE: 'warn' });
    await cluster.script('deploy.sh', [], { WEBHOOK_URL: cluster.webhookUrl });
    await cluster.waitForWebhookAnswer(`Warning: ${LATEST}`);
    try {
      const none = await pod(namespaces.none);
      assert.equal(none.code, 0, `MODE=warn admits where no label says otherwise: ${none.stderr}`);
      assert.match(none.stderr, new RegExp(`Warning: ${POLICY_FAIL}`));
      assert.notEqual((await pod(namespaces.enforce)).code, 0, 'the enforce label wins over MODE=warn');
    } finally {
      await cluster.restartScangate({});
    }

    // Relabelling switches the mode: whoever may label namespaces controls enforcement.
    const relabel = await cluster.kubectl(['label', 'namespace', namespaces.off, 'scangate.io/mode=enforce', '--overwrite']);
    assert.equal(relabel.code, 0, relabel.stderr);
    await waitFor('the relabelled namespace to be enforced', MINUTE, async () => ((await pod(namespaces.off)).code !== 0 ? true : undefined));
    for (const namespace of Object.values(namespaces)) await cluster.kubectl(['delete', 'namespace', namespace, '--wait=false']);
  });
});

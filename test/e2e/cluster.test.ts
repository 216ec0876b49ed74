/**
 * End-to-end: a real kube-apiserver (scripts/cluster-up.sh: etcd + kube-apiserver +
 * kube-controller-manager on 127.0.0.1, no kubelet) calling scangate over TLS that it verifies through
 * the injected caBundle, with the scanner simulator behind scangate. scangate and the simulator run as
 * local child processes; the webhook is registered out-of-cluster (deploy.sh with WEBHOOK_URL).
 *
 * Skips with a printed reason when Go is missing and no control plane is cached, unless CI=true: in CI
 * it always runs. Everything is torn down afterwards, even on failure (and by a watchdog should this
 * process be killed); on failure the state directory with all logs is kept and its path printed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, haveCommand, LocalProcess, ROOT, run, tailFile, waitFor, type RunResult } from './harness.js';

const CI = process.env['CI'] === 'true';
const WEBHOOK = 'images.scangate.io';
const NAMESPACE = 'scangate';
// Tagged: an untagged reference means `latest`, refused by the local rule before any scan.
const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const CLEAN = 'nginx:1.25.3';
const DENIED = `admission webhook "${WEBHOOK}" denied the request`;
const MINUTE = 60_000;

function log(message: string): void {
  process.stderr.write(`[e2e] ${message}\n`);
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Why the suite cannot run here, or undefined. In CI a missing tool is a failure, not a skip. */
function skipReason(): string | undefined {
  const missing = ['kubectl', 'openssl', 'curl', 'make'].filter((c) => !haveCommand(c));
  const problems = missing.map((c) => `${c} is not installed`);
  const check = spawnCheck();
  if (check !== undefined) problems.push(check);
  if (problems.length === 0) return undefined;
  const reason = `e2e needs a local control plane: ${problems.join('; ')}`;
  if (CI) {
    log(`CI=true, so not skipping although ${reason}`);
    return undefined;
  }
  log(`skipping: ${reason}`);
  return reason;
}

/** build-control-plane.sh --check: fails when no binaries are cached and Go is missing to build them. */
function spawnCheck(): string | undefined {
  const r = spawnSync('bash', [join(ROOT, 'scripts/build-control-plane.sh'), '--check'], { encoding: 'utf8' });
  if (r.status === 0) return undefined;
  return r.stderr.trim().replace(/^\[build-control-plane\] /, '') || 'the control plane cannot be built';
}

interface Container {
  readonly name: string;
  readonly image: string;
}

interface PodInput {
  readonly name: string;
  readonly namespace?: string;
  readonly containers: readonly Container[];
  readonly initContainers?: readonly Container[];
}

/** A pod that passes Pod Security "restricted" (enforced in scangate's namespace). */
function podJson(p: PodInput): string {
  const container = (c: Container): object => ({
    name: c.name,
    image: c.image,
    securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
  });
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: p.name, namespace: p.namespace ?? 'default' },
    spec: {
      securityContext: { runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } },
      containers: p.containers.map(container),
      ...(p.initContainers === undefined ? {} : { initContainers: p.initContainers.map(container) }),
    },
  });
}

/**
 * Settings of the scripts and of scangate that a developer may have exported: never inherited. (The
 * binary cache settings SCANGATE_CACHE, K8S_VERSION and ETCD_VERSION are.)
 */
const CALLER_SETTINGS = new RegExp(
  '^(ANCHORE_.*|SAMPLES_.*|WEBHOOK_.*|IMAGE_POLICY_.*|SCANGATE_RUN_DIR|SCANGATE_WATCH_PID|CA_BUNDLE_FILE|CA_FILE|OUT_DIR|NAMESPACE|EXEMPT_NAMESPACES|' +
    'REJECT_IF_TIMEOUT|DENY_LATEST_TAG|MODE|REGISTRY_ALLOWLIST|VERIFY_WEBHOOK|ROLLOUT_TIMEOUT|POD_NAMESPACE|HOST|PORT|' +
    'TLS_CERT_FILE|TLS_KEY_FILE|DEADLINE_MARGIN_MS|DEFAULT_TIMEOUT_MS|LOG_LEVEL|KUBECONFIG|CERT_DIR)$',
);

interface EventItem {
  readonly reason?: string;
  readonly message?: string;
  readonly count?: number;
}

/** Everything one run needs: its state directory, the child processes and the script environment. */
class Cluster {
  readonly runDir: string;
  readonly certDir: string;
  readonly localDir: string;
  readonly kubeconfig: string;
  readonly passFile: string;
  sim: LocalProcess | undefined;
  simPort = 0;
  scangate: LocalProcess | undefined;
  scangatePort = 0;
  private scangateStarts = 0;
  private podSeq = 0;

  constructor() {
    this.runDir = mkdtempSync(join(tmpdir(), 'scangate-e2e-'));
    this.certDir = join(this.runDir, 'certs');
    this.localDir = join(this.runDir, 'local');
    this.kubeconfig = join(this.runDir, 'cluster', 'kubeconfig');
    this.passFile = join(this.localDir, 'scanner-pass');
    mkdirSync(this.localDir, { recursive: true, mode: 0o700 });
  }

  /** The environment for scripts and kubectl: this run's state only, none of the caller's settings. */
  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const inherited = Object.entries(process.env).filter(([key]) => !CALLER_SETTINGS.test(key));
    return {
      ...Object.fromEntries(inherited),
      SCANGATE_RUN_DIR: this.runDir,
      CERT_DIR: this.certDir,
      KUBECONFIG: this.kubeconfig,
      ...extra,
    };
  }

  kubectl(args: readonly string[], input?: string): Promise<RunResult> {
    return run('kubectl', args, { env: this.env(), timeoutMs: 60_000, ...(input === undefined ? {} : { input }) });
  }

  /** Runs a script and fails the test with its output when it exits non-zero. */
  async script(name: string, args: readonly string[] = [], extra: Record<string, string> = {}): Promise<RunResult> {
    const r = await run('bash', [join(ROOT, 'scripts', name), ...args], { env: this.env(extra), timeoutMs: 5 * MINUTE });
    assert.equal(r.code, 0, `scripts/${name} ${args.join(' ')} exited ${String(r.code)}:\n${r.stdout}\n${r.stderr}`);
    return r;
  }

  nextName(prefix: string): string {
    this.podSeq += 1;
    return `${prefix}-${String(this.podSeq)}`;
  }

  createPod(p: PodInput, dryRun = false): Promise<RunResult> {
    return this.kubectl(['create', ...(dryRun ? ['--dry-run=server'] : []), '-f', '-'], podJson(p));
  }

  async podNames(namespace: string, selector: string): Promise<string[]> {
    const r = await this.kubectl(['-n', namespace, 'get', 'pods', '-l', selector, '-o', 'jsonpath={.items[*].metadata.name}']);
    return r.stdout.split(/\s+/).filter((s) => s !== '');
  }

  async replicaSetUid(namespace: string, app: string): Promise<string | undefined> {
    const r = await this.kubectl(['-n', namespace, 'get', 'replicaset', '-l', `app=${app}`, '-o', 'jsonpath={.items[0].metadata.uid}']);
    return r.code === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : undefined;
  }

  async eventsOf(namespace: string, uid: string): Promise<EventItem[]> {
    const r = await this.kubectl(['-n', namespace, 'get', 'events', '--field-selector', `involvedObject.uid=${uid}`, '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { items: EventItem[] }).items;
  }

  async startSimulator(): Promise<void> {
    writeFileSync(this.passFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
    this.simPort = await freePort();
    this.sim = LocalProcess.start(
      'scanner-sim',
      ['dist/src/main.js', 'scanner-sim', '--host', '127.0.0.1', '--port', String(this.simPort), '--data',
        join(ROOT, 'samples/scanner-data.json'), '--user', 'admin', '--pass-file', this.passFile],
      this.env(),
      join(this.localDir, 'scanner-sim.log'),
      join(this.localDir, 'scanner-sim.pid'),
    );
    await waitFor('the scanner simulator to listen', 30_000, async () => {
      assert.ok(this.sim?.running, `scanner simulator exited:\n${this.sim?.tail() ?? ''}`);
      const r = await fetch(`http://127.0.0.1:${String(this.simPort)}/_sim/stats`).catch(() => undefined);
      return r?.ok === true ? true : undefined;
    });
  }

  async simAnalysisDelay(ms: number): Promise<void> {
    const r = await fetch(`http://127.0.0.1:${String(this.simPort)}/_sim/analysis-delay`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ms }),
    });
    assert.ok(r.ok, `PUT /_sim/analysis-delay: HTTP ${String(r.status)} ${await r.text()}`);
  }

  /** Starts scangate on a new port with TLS from gen-certs.sh; `overrides` are extra environment. */
  async startScangate(overrides: Record<string, string> = {}): Promise<void> {
    this.scangatePort = await freePort();
    this.scangateStarts += 1;
    const env = this.env({
      ANCHORE_CLI_URL: `http://127.0.0.1:${String(this.simPort)}/v1`,
      ANCHORE_CLI_USER: 'admin',
      ANCHORE_CLI_PASS_FILE: this.passFile,
      POD_NAMESPACE: NAMESPACE,
      EXEMPT_NAMESPACES: 'kube-system',
      HOST: '127.0.0.1',
      PORT: String(this.scangatePort),
      TLS_CERT_FILE: join(this.certDir, 'tls.crt'),
      TLS_KEY_FILE: join(this.certDir, 'tls.key'),
      ...overrides,
    });
    this.scangate = LocalProcess.start(
      'scangate',
      ['dist/src/main.js', 'serve'],
      env,
      join(this.localDir, `scangate-${String(this.scangateStarts)}.log`),
      join(this.localDir, 'scangate.pid'),
    );
    await waitFor('scangate /readyz over TLS', 30_000, async () => {
      assert.ok(this.scangate?.running, `scangate exited:\n${this.scangate?.tail() ?? ''}`);
      const r = await this.getScangate('/readyz').catch(() => undefined);
      return r?.status === 200 ? true : undefined;
    });
    log(`scangate ${String(this.scangateStarts)} on https://127.0.0.1:${String(this.scangatePort)} ${JSON.stringify(overrides)}`);
  }

  get webhookUrl(): string {
    return `https://127.0.0.1:${String(this.scangatePort)}`;
  }

  /** GET on scangate, verifying its certificate against our CA only. */
  getScangate(path: string): Promise<{ status: number; body: string }> {
    const ca = readFileSync(join(this.certDir, 'ca.crt'));
    return new Promise((resolve, reject) => {
      const req = httpsRequest(`${this.webhookUrl}${path}`, { ca, timeout: 3000 }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  /**
   * Registers the running scangate (deploy.sh, out-of-cluster) and waits until the API server uses the
   * new configuration: a pod with an implied :latest tag, which scangate refuses without asking the
   * scanner, must be denied by the webhook.
   */
  async registerWebhook(timeoutSeconds = 30): Promise<void> {
    await this.script('deploy.sh', [], { WEBHOOK_URL: this.webhookUrl, WEBHOOK_TIMEOUT_SECONDS: String(timeoutSeconds) });
    await this.waitForWebhookAnswer(`${DENIED}: Images using latest tag are not allowed`);
  }

  async waitForWebhookAnswer(expected: string): Promise<void> {
    let last = '';
    await waitFor(
      `kube-apiserver to get "${expected}" from the webhook`,
      30_000,
      async () => {
        const r = await this.createPod({ name: this.nextName('probe'), containers: [{ name: 'probe', image: 'nginx' }] }, true);
        last = r.stderr.trim() || r.stdout.trim();
        return last.includes(expected) ? true : undefined;
      },
      () => last,
    );
  }

  /** Stops scangate, starts a new one with `overrides`, and registers it. */
  async restartScangate(overrides: Record<string, string>, timeoutSeconds = 30): Promise<void> {
    await this.scangate?.stop();
    await this.startScangate(overrides);
    await this.registerWebhook(timeoutSeconds);
  }

  /** Log tails and events, printed when a scenario fails. */
  async diagnostics(): Promise<string> {
    const events = await this.kubectl(['get', 'events', '-A', '--sort-by=.lastTimestamp']).catch(() => undefined);
    return [
      `--- scangate log (${this.scangate?.logFile ?? 'not started'}, last 40 lines)`,
      this.scangate?.tail(40) ?? '',
      `--- scanner simulator log (last 15 lines)`,
      this.sim?.tail(15) ?? '',
      `--- kube-apiserver log (last 30 warnings/errors)`,
      problems(join(this.runDir, 'cluster/logs/kube-apiserver.log'), 30),
      `--- kube-controller-manager log (last 15 warnings/errors)`,
      problems(join(this.runDir, 'cluster/logs/kube-controller-manager.log'), 15),
      `--- kubectl get events -A (last 25)`,
      events === undefined ? '(kubectl failed)' : events.stdout.trimEnd().split('\n').slice(-25).join('\n') + events.stderr,
    ].join('\n');
  }
}

/** The last warning and error lines of a klog file (its info lines at --v=1 drown them). */
function problems(path: string, lines: number): string {
  const text = tailFile(path, 5000);
  const found = text.split('\n').filter((l) => /^[EWF]\d{4} /.test(l));
  return found.length === 0 ? `(none; last line: ${text.split('\n').at(-1) ?? ''})` : found.slice(-lines).join('\n');
}

/** Control-plane binaries (built once), the control plane, certificates, simulator, scangate. */
async function setUp(cluster: Cluster): Promise<void> {
  const buildLog = join(cluster.runDir, 'build.log');
  const started = performance.now();
  const heartbeat = setInterval(() => {
    log(`still building the control plane (${((performance.now() - started) / MINUTE).toFixed(1)} min; log ${buildLog})`);
  }, MINUTE);
  const build = await run('bash', [join(ROOT, 'scripts/build-control-plane.sh')], { env: cluster.env(), stderrFile: buildLog });
  clearInterval(heartbeat);
  assert.equal(build.code, 0, `build-control-plane.sh failed (exit ${String(build.code)}):\n${tailFile(buildLog, 40)}`);
  log(`control plane binaries ready in ${((performance.now() - started) / 1000).toFixed(1)} s: ${build.stdout.trim()}`);

  const up = performance.now();
  const r = await run('bash', [join(ROOT, 'scripts/cluster-up.sh')], {
    env: cluster.env({ SCANGATE_WATCH_PID: String(process.pid) }),
    timeoutMs: 5 * MINUTE,
  });
  assert.equal(r.code, 0, `cluster-up.sh failed:\n${r.stderr}\n${tailFile(join(cluster.runDir, 'cluster/logs/kube-apiserver.log'), 40)}`);
  log(`control plane up in ${((performance.now() - up) / 1000).toFixed(1)} s`);
  await cluster.script('gen-certs.sh');
  await cluster.startSimulator();
  await cluster.startScangate();
}

const reason = skipReason();

describe('e2e: kube-apiserver -> scangate (TLS, caBundle) -> scanner simulator', { skip: reason ?? false }, () => {
  let cluster: Cluster;
  let failed = false;

  /** A scenario: on failure, prints scangate's, the simulator's and the apiserver's logs and events. */
  function scenario(name: string, fn: () => Promise<void>, timeoutMs = 5 * MINUTE): void {
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

  before(
    async () => {
      cluster = new Cluster();
      log(`state directory ${cluster.runDir}`);
      try {
        await setUp(cluster);
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
      if (cluster === undefined) return;
      await cluster.scangate?.stop();
      await cluster.sim?.stop();
      const down = await run('bash', [join(ROOT, 'scripts/cluster-down.sh'), '--keep-logs'], { env: cluster.env(), timeoutMs: MINUTE });
      if (down.code !== 0) log(`cluster-down.sh exited ${String(down.code)}: ${down.stderr}`);
      if (failed) {
        log(`failures: logs kept in ${cluster.runDir}`);
      } else {
        rmSync(cluster.runDir, { recursive: true, force: true });
      }
    },
    { timeout: 2 * MINUTE },
  );

  scenario('1. make deploy + make test: nginx gets its pod, apache-struts2 is denied (kubectl get events)', async () => {
    const makeEnv = cluster.env({ WEBHOOK_URL: cluster.webhookUrl });
    const deploy = await run('make', ['--no-print-directory', '-C', ROOT, 'deploy'], { env: makeEnv, timeoutMs: 5 * MINUTE });
    assert.equal(deploy.code, 0, `make deploy:\n${deploy.stdout}\n${deploy.stderr}`);
    await cluster.waitForWebhookAnswer(`${DENIED}: Images using latest tag are not allowed`);

    const test = await run('make', ['--no-print-directory', '-C', ROOT, 'test'], { env: makeEnv, timeoutMs: 5 * MINUTE });
    log(`make test exited ${String(test.code)} in ${(test.durationMs / 1000).toFixed(1)} s:\n${test.stdout}`);
    assert.equal(test.code, 0, `make test:\n${test.stdout}\n${test.stderr}`);

    // Checked again here, independently of the script, from plain `kubectl get events` output.
    const events = await cluster.kubectl(['get', 'events', '-n', 'default']);
    const denial = new RegExp(`FailedCreate\\s+replicaset/apache-struts2-\\S+\\s+Error creating: ${escapeRe(DENIED)}: Image failed policy check: ${escapeRe(STRUTS)}`);
    assert.match(events.stdout, denial);
    assert.match(events.stdout, /SuccessfulCreate\s+replicaset\/nginx-\S+\s+Created pod: nginx-/);
    assert.ok((await cluster.podNames('default', 'app=nginx')).length >= 1, 'nginx has a pod');
    assert.deepEqual(await cluster.podNames('default', 'app=apache-struts2'), [], 'apache-struts2 has no pod');
    await cluster.kubectl(['-n', 'default', 'delete', 'deployment', 'apache-struts2', 'nginx', '--wait=false']);
  });

  scenario('2. kubectl run with an implied :latest is refused; nginx:1.25.3 is admitted', async () => {
    const latest = await cluster.kubectl(['run', 'latest-nginx', '--image=nginx']);
    assert.notEqual(latest.code, 0, 'nginx (implied latest) must be refused');
    assert.match(latest.stderr, new RegExp(`${escapeRe(DENIED)}: Images using latest tag are not allowed: nginx \\(container "latest-nginx"\\)`));

    const pinned = await cluster.kubectl(['run', 'pinned-nginx', `--image=${CLEAN}`]);
    assert.equal(pinned.code, 0, `${CLEAN} must be admitted: ${pinned.stderr}`);
    assert.deepEqual(await cluster.podNames('default', 'run=pinned-nginx'), ['pinned-nginx']);
  });

  scenario(
    '3. REJECT_IF_TIMEOUT: denied inside the apiserver deadline, retry admitted from cache; =false admits',
    async () => {
      const webhookTimeoutS = 5;
      const analysisDelayMs = 15_000;
      await cluster.restartScangate({ REJECT_IF_TIMEOUT: 'true' }, webhookTimeoutS);
      await cluster.simAnalysisDelay(analysisDelayMs);

      // The first request starts the scan and is answered by scangate before the apiserver gives up.
      const image = 'nginx:1.25.4';
      const direct = await cluster.kubectl(['run', 'slow-direct', `--image=${image}`]);
      const scanStarted = Date.now() - direct.durationMs;
      log(`REJECT_IF_TIMEOUT=true: first answer after ${String(Math.round(direct.durationMs))} ms (webhook timeoutSeconds=${String(webhookTimeoutS)}): ${direct.stderr.trim()}`);
      assert.notEqual(direct.code, 0, 'a pod whose scan is still running must be refused');
      assert.match(direct.stderr, new RegExp(`${escapeRe(DENIED)}: Image scan still in progress: ${escapeRe(image)}`));
      assert.doesNotMatch(direct.stderr, /failed calling webhook|deadline exceeded|context canceled/);
      assert.ok(direct.durationMs < webhookTimeoutS * 1000 + 1500, `answered in ${String(direct.durationMs)} ms`);

      // A Deployment's ReplicaSet is refused the same way, retries with backoff, and gets the verdict.
      const create = await cluster.kubectl(['create', 'deployment', 'slowscan', `--image=${image}`]);
      assert.equal(create.code, 0, create.stderr);
      const pods = await waitFor('the slowscan ReplicaSet to create its pod', 2 * MINUTE, async () => {
        const names = await cluster.podNames('default', 'app=slowscan');
        return names.length > 0 ? names : undefined;
      });
      const admittedAfterMs = Date.now() - scanStarted;
      const uid = await cluster.replicaSetUid('default', 'slowscan');
      assert.ok(uid !== undefined, 'slowscan has a ReplicaSet');
      const events = await cluster.eventsOf('default', uid);
      const failures = events.filter((e) => e.reason === 'FailedCreate');
      log(`slowscan: pod ${pods.join(',')} admitted ${String(admittedAfterMs)} ms after the scan started; FailedCreate: ${JSON.stringify(failures.map((e) => [e.count, e.message]))}`);
      assert.ok(failures.length >= 1, 'the first ReplicaSet attempt must have been denied');
      for (const e of failures) {
        assert.match(e.message ?? '', new RegExp(`${escapeRe(DENIED)}: Image scan still in progress: ${escapeRe(image)}`));
        assert.doesNotMatch(e.message ?? '', /failed calling webhook|deadline exceeded/);
      }
      assert.ok(events.some((e) => e.reason === 'SuccessfulCreate'), 'the retry created the pod');
      assert.ok(admittedAfterMs >= analysisDelayMs - 1000, `admitted only after the scan finished (${String(admittedAfterMs)} ms)`);

      // REJECT_IF_TIMEOUT=false: the same wait ends in an admission.
      await cluster.restartScangate({ REJECT_IF_TIMEOUT: 'false' }, webhookTimeoutS);
      const lenient = await cluster.kubectl(['run', 'lenient', '--image=nginx:1.25.5']);
      log(`REJECT_IF_TIMEOUT=false: answered after ${String(Math.round(lenient.durationMs))} ms: ${(lenient.stdout + lenient.stderr).trim()}`);
      assert.equal(lenient.code, 0, `REJECT_IF_TIMEOUT=false must admit: ${lenient.stderr}`);
      assert.ok(lenient.durationMs < webhookTimeoutS * 1000 + 1500, `answered in ${String(lenient.durationMs)} ms`);
      assert.deepEqual(await cluster.podNames('default', 'run=lenient'), ['lenient']);

      await cluster.simAnalysisDelay(0);
      await cluster.restartScangate({}, 30);
      await cluster.kubectl(['-n', 'default', 'delete', 'deployment', 'slowscan', '--wait=false']);
    },
    6 * MINUTE,
  );

  scenario('4. a bad init container is refused and named; so is a bad ephemeral container', async () => {
    const r = await cluster.createPod({
      name: 'bad-init',
      initContainers: [{ name: 'fetch-config', image: STRUTS }],
      containers: [{ name: 'web', image: CLEAN }],
    });
    assert.notEqual(r.code, 0, 'a pod with a failing init container must be refused');
    assert.match(r.stderr, new RegExp(`${escapeRe(DENIED)}: Image failed policy check: ${escapeRe(STRUTS)} \\(init container "fetch-config"\\)`));
    assert.doesNotMatch(r.stderr, /container "web"/, 'the clean container is not blamed');

    const target = await cluster.createPod({ name: 'debug-target', containers: [{ name: 'web', image: CLEAN }] });
    assert.equal(target.code, 0, target.stderr);
    const debug = await cluster.kubectl(['-n', 'default', 'debug', 'debug-target', `--image=${STRUTS}`, '--container=dbg']);
    assert.notEqual(debug.code, 0, 'adding a failing ephemeral container must be refused');
    assert.match(debug.stderr, new RegExp(`${escapeRe(DENIED)}: Image failed policy check: ${escapeRe(STRUTS)} \\(ephemeral container "dbg"\\)`));
  });

  scenario('5. kube-system and scangate\'s namespace are exempt, even with scangate down', async () => {
    for (const namespace of ['kube-system', NAMESPACE]) {
      const r = await cluster.createPod({ name: cluster.nextName('exempt'), namespace, containers: [{ name: 'app', image: STRUTS }] });
      assert.equal(r.code, 0, `${namespace} must be exempt: ${r.stderr}`);
    }
    // With scangate stopped, failurePolicy Fail refuses pods elsewhere, but the namespaceSelector keeps
    // the exempt namespaces out of the webhook entirely, so scangate can always be redeployed.
    await cluster.scangate?.stop();
    const blocked = await cluster.createPod({ name: cluster.nextName('closed'), containers: [{ name: 'app', image: CLEAN }] }, true);
    assert.notEqual(blocked.code, 0, 'failurePolicy Fail: no webhook, no pod');
    assert.match(blocked.stderr, new RegExp(`failed calling webhook "${escapeRe(WEBHOOK)}"`));
    for (const namespace of ['kube-system', NAMESPACE]) {
      const r = await cluster.createPod({ name: cluster.nextName('down'), namespace, containers: [{ name: 'app', image: STRUTS }] }, true);
      assert.equal(r.code, 0, `${namespace} must not depend on scangate: ${r.stderr}`);
    }
    await cluster.startScangate();
    await cluster.registerWebhook();
  });

  scenario('6. ImagePolicyWebhook through the generated AdmissionConfiguration', async () => {
    const del = await cluster.kubectl(['delete', 'validatingwebhookconfiguration', 'scangate']);
    assert.equal(del.code, 0, del.stderr);
    const gen = await cluster.script('gen-image-policy-config.sh', [], {
      WEBHOOK_URL: cluster.webhookUrl,
      OUT_DIR: join(cluster.runDir, 'image-policy'),
    });
    const admissionConfig = gen.stdout.trim();
    log(`AdmissionConfiguration:\n${readFileSync(admissionConfig, 'utf8')}`);
    try {
      await cluster.script('cluster-up.sh', ['--restart-apiserver'], { IMAGE_POLICY_CONFIG: admissionConfig });

      const latest = await cluster.kubectl(['run', 'ipw-latest', '--image=nginx']);
      log(`ImagePolicyWebhook, nginx: ${latest.stderr.trim()}`);
      assert.notEqual(latest.code, 0, 'nginx (implied latest) must be forbidden');
      assert.match(latest.stderr, /pods "ipw-latest" is forbidden: image policy webhook backend denied one or more images: Images using latest tag are not allowed/);

      const struts = await cluster.createPod({ name: 'ipw-struts', containers: [{ name: 'app', image: STRUTS }] });
      assert.notEqual(struts.code, 0);
      assert.match(struts.stderr, new RegExp(`image policy webhook backend denied one or more images: Image failed policy check: ${escapeRe(STRUTS)}`));

      const clean = await cluster.kubectl(['run', 'ipw-clean', `--image=${CLEAN}`]);
      assert.equal(clean.code, 0, `${CLEAN} must be admitted: ${clean.stderr}`);

      // ImagePolicyWebhook has no namespaceSelector: here scangate's own exemptions are what apply.
      for (const namespace of ['kube-system', NAMESPACE]) {
        const r = await cluster.createPod({ name: cluster.nextName('ipw-exempt'), namespace, containers: [{ name: 'app', image: STRUTS }] }, true);
        assert.equal(r.code, 0, `${namespace} must be exempt: ${r.stderr}`);
      }
    } finally {
      await cluster.script('cluster-up.sh', ['--restart-apiserver']);
      await cluster.registerWebhook();
    }
  });

  scenario('7. the API server verifies scangate\'s certificate through the injected caBundle', async () => {
    const ca = readFileSync(join(cluster.certDir, 'ca.crt'));
    const vwc = await cluster.kubectl(['get', 'validatingwebhookconfiguration', 'scangate', '-o', 'json']);
    const config = JSON.parse(vwc.stdout) as {
      webhooks: Array<{ clientConfig: { url?: string; caBundle?: string }; timeoutSeconds?: number; failurePolicy?: string }>;
    };
    const hook = config.webhooks[0];
    assert.ok(hook !== undefined);
    assert.equal(hook.clientConfig.url, `${cluster.webhookUrl}/validate`);
    assert.equal(hook.clientConfig.caBundle, ca.toString('base64'));
    assert.equal(hook.failurePolicy, 'Fail');
    assert.equal(hook.timeoutSeconds, 30);

    // A caBundle from another CA: deploy.sh refuses it up front, and if forced the API server refuses
    // the TLS handshake (so nothing in this suite passes through an unverified connection).
    const otherCerts = join(cluster.runDir, 'other-ca');
    await cluster.script('gen-certs.sh', [], { CERT_DIR: otherCerts });
    const wrongCa = join(otherCerts, 'ca.crt');
    const refused = await run('bash', [join(ROOT, 'scripts/deploy.sh')], {
      env: cluster.env({ WEBHOOK_URL: cluster.webhookUrl, CA_BUNDLE_FILE: wrongCa }),
    });
    assert.notEqual(refused.code, 0, 'deploy.sh must refuse a CA that does not verify scangate');
    assert.match(refused.stderr, /does not answer \/readyz over TLS verified with/);
    await cluster.script('deploy.sh', [], { WEBHOOK_URL: cluster.webhookUrl, CA_BUNDLE_FILE: wrongCa, VERIFY_WEBHOOK: 'false' });
    await cluster.waitForWebhookAnswer('x509: certificate signed by unknown authority');

    await cluster.registerWebhook();
    const ok = await cluster.kubectl(['run', 'tls-ok', `--image=${CLEAN}`]);
    assert.equal(ok.code, 0, ok.stderr);
  });
});

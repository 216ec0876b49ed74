/**
 * The local cluster of the end-to-end suites: a real kube-apiserver (scripts/cluster-up.sh: etcd +
 * kube-apiserver + kube-controller-manager on 127.0.0.1, no kubelet) calling scangate over TLS that it
 * verifies through the injected caBundle, with the scanner simulator behind scangate. scangate and the
 * simulator run as local child processes; the webhook is registered out-of-cluster (deploy.sh with
 * WEBHOOK_URL). Each e2e file makes its own Cluster (its own state directory and control plane).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  freePort,
  LocalProcess,
  logTo,
  MINUTE,
  missingCommands,
  ROOT,
  run,
  scriptCheck,
  skipReason as suiteSkipReason,
  tailFile,
  waitFor,
  type RunResult,
} from './harness.js';

export { CI, MINUTE } from './harness.js';
export const WEBHOOK = 'images.scangate.io';
export const NAMESPACE = 'scangate';
// Tagged: an untagged reference means `latest`, refused by the local rule before any scan.
export const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
export const CLEAN = 'nginx:1.25.3';
export const DENIED = `admission webhook "${WEBHOOK}" denied the request`;

export const log = logTo('e2e');

export const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Why the suites on this cluster cannot run here, or undefined. In CI a missing tool is a failure, not a skip. */
export function skipReason(): string | undefined {
  const problems = missingCommands(['kubectl', 'openssl', 'curl', 'make']);
  // build-control-plane.sh --check fails when no binaries are cached and Go is missing to build them.
  const check = scriptCheck('build-control-plane.sh', 'the control plane cannot be built')?.replace(/^\[build-control-plane\] /, '');
  if (check !== undefined) problems.push(check);
  return suiteSkipReason(log, 'e2e needs a local control plane', problems);
}

export interface Container {
  readonly name: string;
  readonly image: string;
}

export interface PodInput {
  readonly name: string;
  readonly namespace?: string;
  readonly containers: readonly Container[];
  readonly initContainers?: readonly Container[];
}

/** A pod that passes Pod Security "restricted" (enforced in scangate's namespace). */
export function podJson(p: PodInput): string {
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
    'REJECT_IF_TIMEOUT|DENY_LATEST_TAG|MODE|WORKLOAD_MODE|NAMESPACE_MODES|WORKLOAD_WEBHOOK_TIMEOUT_SECONDS|REGISTRY_ALLOWLIST|VERIFY_WEBHOOK|ROLLOUT_TIMEOUT|POD_NAMESPACE|HOST|PORT|' +
    'TLS_CERT_FILE|TLS_KEY_FILE|DEADLINE_MARGIN_MS|DEFAULT_TIMEOUT_MS|LOG_LEVEL|KUBECONFIG|CERT_DIR)$',
);

export interface EventItem {
  readonly reason?: string;
  readonly message?: string;
  readonly count?: number;
}

/** Everything one run needs: its state directory, the child processes and the script environment. */
export class Cluster {
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
      ['simulator/dist/main.js', '--host', '127.0.0.1', '--port', String(this.simPort), '--data',
        join(ROOT, 'simulator/scanner-data.json'), '--user', 'admin', '--pass-file', this.passFile],
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

/**
 * Control-plane binaries (built once), the control plane, certificates, simulator, scangate (with
 * `scangateEnv` as extra environment).
 */
export async function setUp(cluster: Cluster, scangateEnv: Record<string, string> = {}): Promise<void> {
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
  await cluster.startScangate(scangateEnv);
}

/** Stops everything the cluster started; keeps its state directory (logs) when a scenario failed. */
export async function tearDown(cluster: Cluster | undefined, failed: boolean): Promise<void> {
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
}

/**
 * End-to-end "in-cluster": scangate installed the way operators install it (`helm install` of
 * charts/scangate) on a real node: kubelet + containerd + runc + CNI bridge (scripts/node-up.sh), with the
 * whole cluster in a network namespace of its own. The image is scripts/build-image.sh's OCI archive,
 * imported into containerd; the scanner is the simulator, listening on the node's address, which pods
 * reach through the CNI bridge. The API server reaches scangate through its Service (clientConfig.service,
 * the certificate for the Service's DNS name).
 *
 * Needs root (network namespace, cgroups, mounts), iproute2 and nsenter; skips with a printed reason when
 * they or Go are missing, unless CI=true: in CI it always runs. Everything is torn down afterwards, even on
 * failure (and by a watchdog should this process be killed); on failure the logs are kept and their path
 * printed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { logTo, MINUTE, missingCommands, ROOT, run, scenarios, scriptCheck, skipReason as suiteSkipReason, tailFile, waitFor, type RunResult } from './harness.js';

const RELEASE = 'scangate';
const NAMESPACE = 'scangate';
const WORKLOADS = 'workloads';
const WEBHOOK = 'images.scangate.io';
const DENIED = `admission webhook "${WEBHOOK}" denied the request`;
const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const CLEAN = 'nginx:1.25.3';
const SIM_PORT = 8228;
const SELECTOR = `app.kubernetes.io/name=scangate,app.kubernetes.io/instance=${RELEASE}`;

const log = logTo('in-cluster');

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function skipReason(): string | undefined {
  const problems = missingCommands(['kubectl', 'openssl', 'curl', 'ip', 'nsenter']);
  if (process.getuid?.() !== 0) problems.push('it must run as root (network namespace, cgroups, mounts)');
  for (const script of ['build-control-plane.sh', 'build-node.sh', 'build-helm.sh']) {
    if (!existsSync(join(ROOT, 'scripts', script))) {
      problems.push(`scripts/${script} is missing`);
      continue;
    }
    const p = scriptCheck(script);
    if (p !== undefined) problems.push(p);
  }
  if (!existsSync(join(ROOT, 'charts/scangate/Chart.yaml'))) problems.push('charts/scangate is missing');
  return suiteSkipReason(log, 'in-cluster needs a local node', problems);
}

interface PodItem {
  readonly metadata: { readonly name: string; readonly uid: string; readonly deletionTimestamp?: string; readonly annotations?: Record<string, string> };
  readonly spec: {
    readonly nodeName?: string;
    readonly securityContext?: { readonly runAsNonRoot?: boolean; readonly runAsUser?: number };
    readonly containers: readonly {
      readonly image: string;
      readonly securityContext?: { readonly readOnlyRootFilesystem?: boolean; readonly runAsNonRoot?: boolean; readonly allowPrivilegeEscalation?: boolean };
      readonly readinessProbe?: { readonly httpGet?: { readonly scheme?: string; readonly path?: string } };
      readonly startupProbe?: { readonly httpGet?: { readonly scheme?: string } };
      readonly livenessProbe?: { readonly httpGet?: { readonly scheme?: string } };
    }[];
  };
  readonly status: {
    readonly podIP?: string;
    readonly phase?: string;
    readonly conditions?: readonly { readonly type: string; readonly status: string }[];
    readonly containerStatuses?: readonly {
      readonly ready: boolean;
      readonly restartCount: number;
      readonly imageID?: string;
      readonly state?: { readonly waiting?: { readonly reason?: string } };
    }[];
  };
}

interface EventItem {
  readonly reason?: string;
  readonly message?: string;
}

const ready = (p: PodItem): boolean =>
  p.metadata.deletionTimestamp === undefined && (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

/** The node (node-up.sh) and everything this suite runs in its network namespace. */
class Node {
  readonly runDir: string;
  readonly nodeDir: string;
  env: Record<string, string> = {};
  helmBin = '';
  private podSeq = 0;

  constructor() {
    // Short: containerd's and the shims' socket paths must stay under 108 bytes.
    this.runDir = mkdtempSync(join(tmpdir(), 'sg-node-'));
    this.nodeDir = join(this.runDir, 'node');
  }

  scriptEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const inherited = Object.entries(process.env).filter(([k]) => !/^(KUBECONFIG|SCANGATE_RUN_DIR|SCANGATE_WATCH_PID|IMAGE|NAMESPACE)$/.test(k));
    return { ...Object.fromEntries(inherited), SCANGATE_RUN_DIR: this.runDir, ...extra };
  }

  get nodeIp(): string {
    return this.env['NODE_IP'] ?? '';
  }

  /** COMMAND run inside the node's network namespace, with its KUBECONFIG. */
  netns(cmd: string, args: readonly string[], input?: string, timeoutMs = 2 * MINUTE): Promise<RunResult> {
    return run(join(this.nodeDir, 'bin/netns-exec'), [cmd, ...args], { env: this.scriptEnv(), timeoutMs, ...(input === undefined ? {} : { input }) });
  }

  kubectl(args: readonly string[], input?: string, timeoutMs = MINUTE): Promise<RunResult> {
    return run(join(this.nodeDir, 'bin/kubectl'), args, { env: this.scriptEnv(), timeoutMs, ...(input === undefined ? {} : { input }) });
  }

  async kubectlOk(args: readonly string[], input?: string): Promise<string> {
    const r = await this.kubectl(args, input);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  helm(args: readonly string[], timeoutMs = 6 * MINUTE): Promise<RunResult> {
    return this.netns(this.helmBin, args, undefined, timeoutMs);
  }

  async helmOk(args: readonly string[]): Promise<string> {
    const r = await this.helm(args);
    assert.equal(r.code, 0, `helm ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  nextName(prefix: string): string {
    this.podSeq += 1;
    return `${prefix}-${String(this.podSeq)}`;
  }

  /**
   * A pod that no scheduler picks up (it stays Pending): the burst measures admission, not 2 CPUs
   * starting containers.
   */
  podJson(name: string, image: string, scheduled = false): string {
    return JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: WORKLOADS },
      spec: {
        ...(scheduled ? {} : { schedulerName: 'scangate-test-unscheduled' }),
        containers: [{ name: 'app', image }],
      },
    });
  }

  createPod(name: string, image: string): Promise<RunResult> {
    return this.kubectl(['create', '-f', '-'], this.podJson(name, image));
  }

  async pods(namespace: string, selector: string): Promise<PodItem[]> {
    const out = await this.kubectlOk(['-n', namespace, 'get', 'pods', '-l', selector, '-o', 'json']);
    return (JSON.parse(out) as { items: PodItem[] }).items;
  }

  async scangatePods(): Promise<PodItem[]> {
    return this.pods(NAMESPACE, SELECTOR);
  }

  /** Both replicas Ready, none terminating, the Deployment's rollout complete. */
  async waitForScangate(what: string, timeoutMs = 4 * MINUTE): Promise<PodItem[]> {
    let last = '';
    return waitFor(
      what,
      timeoutMs,
      async () => {
        const pods = await this.scangatePods();
        last = pods.map((p) => `${p.metadata.name}:${p.status.phase ?? '?'}:${ready(p) ? 'ready' : 'not-ready'}${p.metadata.deletionTimestamp ? ':terminating' : ''}`).join(' ');
        return pods.length === 2 && pods.every(ready) ? pods : undefined;
      },
      () => last,
      1000,
    );
  }

  async events(namespace: string, uid: string): Promise<EventItem[]> {
    const out = await this.kubectlOk(['-n', namespace, 'get', 'events', '--field-selector', `involvedObject.uid=${uid}`, '-o', 'json']);
    return (JSON.parse(out) as { items: EventItem[] }).items;
  }

  async simAnalysisDelay(ms: number): Promise<void> {
    const r = await this.netns('curl', ['-fsS', '-X', 'PUT', '-H', 'content-type: application/json', '--data', JSON.stringify({ ms }),
      `http://${this.nodeIp}:${String(SIM_PORT)}/_sim/analysis-delay`]);
    assert.equal(r.code, 0, `PUT /_sim/analysis-delay: ${r.stderr}`);
  }

  /** The scanner simulator in the node's namespace, on the node's address; node-down.sh stops it. */
  async startSimulator(passFile: string): Promise<void> {
    const logFile = join(this.nodeDir, 'logs/scanner-sim.log');
    const fd = openSync(logFile, 'a');
    const child = spawn(
      'nsenter',
      [`--net=/run/netns/${this.env['NETNS'] ?? ''}`, process.execPath, join(ROOT, 'simulator/dist/main.js'), '--host', this.nodeIp,
        '--port', String(SIM_PORT), '--data', join(ROOT, 'simulator/scanner-data.json'), '--user', 'admin', '--pass-file', passFile],
      { env: this.scriptEnv(), stdio: ['ignore', fd, fd], detached: true },
    );
    closeSync(fd);
    child.unref();
    assert.ok(child.pid !== undefined, 'could not start the scanner simulator');
    // nsenter execs node in place: the pid is the simulator's, in the scripts' pid-file format.
    writeFileSync(join(this.nodeDir, 'scanner-sim.pid'), `${String(child.pid)}\n`);
    writeFileSync(join(this.nodeDir, 'scanner-sim.pid.cmd'), `${process.execPath}\n`);
    await waitFor('the scanner simulator on the node address', 30_000, async () => {
      const r = await this.netns('curl', ['-fsS', `http://${this.nodeIp}:${String(SIM_PORT)}/_sim/stats`]);
      return r.code === 0 ? true : undefined;
    }, () => tailFile(logFile, 10));
  }

  async diagnostics(): Promise<string> {
    const logs = join(this.nodeDir, 'logs');
    const sg = await this.kubectl(['-n', NAMESPACE, 'logs', '-l', SELECTOR, '--tail=20', '--prefix']).catch(() => undefined);
    const pods = await this.kubectl(['get', 'pods', '-A', '-o', 'wide']).catch(() => undefined);
    const events = await this.kubectl(['get', 'events', '-A', '--sort-by=.lastTimestamp']).catch(() => undefined);
    return [
      '--- kubectl get pods -A', pods?.stdout ?? '', pods?.stderr ?? '',
      '--- scangate pods (last 20 lines each)', sg?.stdout ?? '', sg?.stderr ?? '',
      '--- kubectl get events -A (last 30)', (events?.stdout ?? '').trimEnd().split('\n').slice(-30).join('\n'),
      '--- kubelet (warnings/errors)', problems(join(logs, 'kubelet.log'), 25),
      '--- containerd (last 15)', tailFile(join(logs, 'containerd.log'), 15),
      '--- kube-apiserver (warnings/errors)', problems(join(logs, 'kube-apiserver.log'), 20),
      '--- scanner simulator (last 10)', tailFile(join(logs, 'scanner-sim.log'), 10),
    ].join('\n');
  }
}

function problems(path: string, lines: number): string {
  const text = tailFile(path, 5000);
  const found = text.split('\n').filter((l) => /^[EWF]\d{4} /.test(l));
  return found.length === 0 ? `(none; last line: ${text.split('\n').at(-1) ?? ''})` : found.slice(-lines).join('\n');
}

function parseEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1]] = m[2];
  }
  return out;
}

const reason = skipReason();

describe('in-cluster: helm install on a real node (kubelet, containerd, runc, CNI) in its own network namespace', { skip: reason ?? false }, () => {
  let node: Node;
  const suite = scenarios(log, () => node.diagnostics(), 8 * MINUTE);
  const { scenario } = suite;
  let passFile = '';


  const chart = join(ROOT, 'charts/scangate');
  const installArgs = (): string[] => [
    '--namespace', NAMESPACE, '--create-namespace',
    '--set', 'image.repository=scangate', '--set', 'image.tag=0.1.0', '--set', 'image.pullPolicy=Never',
    '--set', `scanner.url=http://${node.nodeIp}:${String(SIM_PORT)}/v1`,
    '--set', 'scanner.user=admin', '--set-file', `scanner.password=${passFile}`,
    '--wait', '--timeout', '5m',
  ];

  before(
    async () => {
      node = new Node();
      log(`state directory ${node.runDir}`);
      try {
        const started = performance.now();
        const buildLog = join(node.runDir, 'build.log');
        const heartbeat = setInterval(() => log(`still building (${((performance.now() - started) / MINUTE).toFixed(1)} min; log ${buildLog})`), MINUTE);
        for (const script of ['build-control-plane.sh', 'build-node.sh', 'build-helm.sh']) {
          const b = await run('bash', [join(ROOT, 'scripts', script)], { env: node.scriptEnv(), stderrFile: buildLog });
          assert.equal(b.code, 0, `${script} failed:\n${tailFile(buildLog, 40)}`);
          if (script === 'build-helm.sh') node.helmBin = b.stdout.trim();
        }
        clearInterval(heartbeat);
        log(`binaries ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
        const up = await run('bash', [join(ROOT, 'scripts/node-up.sh')], {
          env: node.scriptEnv({ SCANGATE_WATCH_PID: String(process.pid) }),
          timeoutMs: 10 * MINUTE,
        });
        assert.equal(up.code, 0, `node-up.sh failed:\n${up.stderr}`);
        node.env = parseEnv(readFileSync(up.stdout.trim(), 'utf8'));
        log(`node up in ${(up.durationMs / 1000).toFixed(1)} s: ${node.env['NODE_NAME'] ?? ''} ${node.nodeIp} in ${node.env['NETNS'] ?? ''}`);
        passFile = join(node.nodeDir, 'scanner-pass');
        writeFileSync(passFile, `sim-${String(Date.now())}-${String(process.pid)}`, { mode: 0o600 });
        await node.startSimulator(passFile);
        await node.kubectlOk(['create', 'namespace', WORKLOADS]);
        await waitFor('the workloads/default ServiceAccount', MINUTE, async () =>
          (await node.kubectl(['-n', WORKLOADS, 'get', 'serviceaccount', 'default'])).code === 0 ? true : undefined);
      } catch (err) {
        suite.failed = true;
        log(`set-up FAILED: ${String(err)}`);
        if (node.env['NETNS'] !== undefined) log(await node.diagnostics());
        throw err;
      }
    },
    { timeout: 80 * MINUTE },
  );

  after(
    async () => {
      if (node === undefined) return;
      const down = await run('bash', [join(ROOT, 'scripts/node-down.sh'), '--keep-logs'], { env: node.scriptEnv(), timeoutMs: 2 * MINUTE });
      if (down.code !== 0) log(`node-down.sh exited ${String(down.code)}: ${down.stderr}`);
      if (suite.failed) log(`failures: logs kept in ${node.runDir}`);
      else rmSync(node.runDir, { recursive: true, force: true });
    },
    { timeout: 3 * MINUTE },
  );

  scenario('1. helm install: both scangate pods Ready through their HTTPS probes, non-root, read-only root filesystem', async () => {
    const t0 = performance.now();
    await node.helmOk(['install', RELEASE, chart, ...installArgs()]);
    log(`helm install --wait: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const pods = await node.waitForScangate('both scangate replicas Ready');
    for (const p of pods) {
      const c = p.spec.containers[0];
      assert.ok(c !== undefined);
      assert.equal(c.image, 'scangate:0.1.0');
      assert.equal(c.readinessProbe?.httpGet?.scheme, 'HTTPS');
      assert.equal(c.startupProbe?.httpGet?.scheme, 'HTTPS');
      assert.equal(c.livenessProbe?.httpGet?.scheme, 'HTTPS');
      assert.equal(p.spec.securityContext?.runAsNonRoot, true);
      assert.equal(c.securityContext?.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
      assert.equal(p.status.containerStatuses?.[0]?.ready, true);
      // The image is the one imported into containerd, never pulled (pullPolicy Never).
      assert.match(p.status.containerStatuses?.[0]?.imageID ?? '', /sha256:[0-9a-f]{64}/);
    }
    // The kubelet's own probe counters: the readiness probes (HTTPS GET /readyz) succeeded.
    const metrics = await node.kubectlOk(['get', '--raw', `/api/v1/nodes/${node.env['NODE_NAME'] ?? ''}/proxy/metrics/probes`]);
    for (const p of pods) {
      const line = new RegExp(`prober_probe_total\\{[^}]*pod="${escapeRe(p.metadata.name)}"[^}]*probe_type="Readiness"[^}]*result="successful"[^}]*\\} (\\d+)`).exec(metrics)
        ?? new RegExp(`prober_probe_total\\{[^}]*probe_type="Readiness"[^}]*pod="${escapeRe(p.metadata.name)}"[^}]*result="successful"[^}]*\\} (\\d+)`).exec(metrics);
      assert.ok(line !== null && Number(line[1]) >= 1, `no successful readiness probe counted for ${p.metadata.name}:\n${metrics.split('\n').filter((l) => l.includes(p.metadata.name)).join('\n')}`);
    }
    // From inside the container: the process's uid/gid, and the root filesystem refuses writes.
    const pod = pods[0]?.metadata.name ?? '';
    const inside = await node.kubectlOk(['-n', NAMESPACE, 'exec', pod, '--', '/nodejs/bin/node', '-e',
      `const fs=require('fs');const w=(p)=>{try{fs.writeFileSync(p,'x');return 'written'}catch(e){return e.code}};` +
      `console.log(JSON.stringify({uid:process.getuid(),gid:process.getgid(),root:w('/x'),app:w('/app/x'),tmp:w('/tmp/x')}))`]);
    assert.deepEqual(JSON.parse(inside.trim()), { uid: 65532, gid: 65532, root: 'EROFS', app: 'EROFS', tmp: 'written' });
  });

  scenario('2. the API server calls scangate through its Service, verifying the certificate for the Service DNS name', async () => {
    const vwc = JSON.parse(await node.kubectlOk(['get', 'validatingwebhookconfiguration', RELEASE, '-o', 'json'])) as {
      webhooks: { name: string; clientConfig: { url?: string; service?: { name: string; namespace: string; port?: number; path?: string } } }[];
    };
    const hook = vwc.webhooks.find((w) => w.name === WEBHOOK);
    assert.ok(hook !== undefined, 'the images.scangate.io webhook is registered');
    assert.equal(hook.clientConfig.url, undefined, 'no URL: the Service is the only way in');
    const svc = hook.clientConfig.service;
    assert.deepEqual([svc?.name, svc?.namespace, svc?.port], [RELEASE, NAMESPACE, 443], JSON.stringify(svc));
    assert.match(svc?.path ?? '', /^\/validate\b/);
    // The certificate a pod serves names the Service only: DNS names, no IP address. The API server's
    // verification therefore succeeds only against scangate.scangate.svc.
    const ip = (await node.scangatePods())[0]?.status.podIP ?? '';
    const cert = await node.netns('bash', ['-c', `openssl s_client -connect ${ip}:8443 -servername ${RELEASE}.${NAMESPACE}.svc </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName`]);
    assert.equal(cert.code, 0, cert.stderr);
    assert.match(cert.stdout, new RegExp(`DNS:${escapeRe(`${RELEASE}.${NAMESPACE}.svc`)}\\b`));
    assert.doesNotMatch(cert.stdout, /IP Address:/);
    // And it answers: a pod with an implied :latest tag is refused by scangate's local rule.
    const latest = await node.kubectl(['create', '--dry-run=server', '-f', '-'], node.podJson('probe-latest', 'nginx'));
    assert.notEqual(latest.code, 0);
    assert.match(latest.stderr, new RegExp(`${escapeRe(DENIED)}: Images using latest tag are not allowed`));
  });

  scenario('3. nginx is admitted and runs into ErrImagePull on the node; apache-struts2 is refused at kubectl apply, and its pods', async () => {
    const deployment = (name: string, image: string): string => JSON.stringify({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: WORKLOADS },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: name } },
        template: { metadata: { labels: { app: name } }, spec: { containers: [{ name, image }] } },
      },
    });
    await node.kubectlOk(['apply', '-f', '-'], deployment('nginx', CLEAN));
    // The Deployment's pod template is judged at apply time (workloads.scangate.io): refused at once.
    const struts = await node.kubectl(['apply', '-f', '-'], deployment('apache-struts2', STRUTS));
    assert.notEqual(struts.code, 0, 'the struts Deployment is refused at kubectl apply');
    assert.match(
      struts.stderr,
      new RegExp(`admission webhook "workloads\\.scangate\\.io" denied the request: Image failed policy check: ${escapeRe(STRUTS)} \\(deployment "apache-struts2" container "apache-struts2"\\)`),
    );
    // Admitted, scheduled, and handed to the kubelet, whose pull fails: no registry can be reached.
    let pullState = '';
    await waitFor('the nginx pod on the node in ErrImagePull', 3 * MINUTE, async () => {
      const pods = await node.pods(WORKLOADS, 'app=nginx');
      const waiting = pods[0]?.status.containerStatuses?.[0]?.state?.waiting?.reason;
      pullState = `${String(pods.length)} pod(s), ${pods[0]?.spec.nodeName ?? 'unscheduled'}, ${waiting ?? pods[0]?.status.phase ?? ''}`;
      return pods.length === 1 && pods[0]?.spec.nodeName === node.env['NODE_NAME'] && (waiting === 'ErrImagePull' || waiting === 'ImagePullBackOff') ? true : undefined;
    }, () => pullState, 1000);
    // The pods stay the enforcement point: one of the struts image is refused by images.scangate.io.
    const pod = await node.createPod(node.nextName('struts-pod'), STRUTS);
    assert.notEqual(pod.code, 0, 'a struts pod is refused');
    assert.match(pod.stderr, new RegExp(`${escapeRe(DENIED)}: Image failed policy check: ${escapeRe(STRUTS)}`));
    assert.deepEqual(await node.pods(WORKLOADS, 'app=apache-struts2'), []);
    await node.kubectlOk(['-n', WORKLOADS, 'delete', 'deployment', 'nginx', '--wait=false']);
  });

  scenario('4. evicting a scangate pod during a burst of pod creations: no admission failure; the PDB refuses a second eviction', async () => {
    const before = await node.waitForScangate('both replicas Ready before the burst');
    const victim = before[0]?.metadata.name ?? '';
    const other = before[1]?.metadata.name ?? '';
    const eviction = (name: string): string => JSON.stringify({ apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace: NAMESPACE } });
    const results: { ok: boolean; at: number; err: string }[] = [];
    const t0 = performance.now();
    let stop = false;
    let evictedAt = 0;
    let secondEviction: RunResult | undefined;
    const worker = async (id: number): Promise<void> => {
      while (!stop) {
        const r = await node.createPod(node.nextName(`burst-${String(id)}`), CLEAN);
        results.push({ ok: r.code === 0, at: performance.now() - t0, err: r.stderr.trim() });
      }
    };
    const workers = [1, 2, 3].map((id) => worker(id));
    // And a faster burst from inside the namespace: 8 at a time over kept-alive connections, for 30 s.
    const evictedAtMs = { value: 0 };
    const fast = node.netns(process.execPath, [join(ROOT, 'dist/test/e2e/in-cluster-burst.js'), join(node.nodeDir, 'pki'), '6443', WORKLOADS, CLEAN,
      '30000', '8', '20000'], undefined, 2 * MINUTE);
    const controller = (async (): Promise<void> => {
      await sleep(3000);
      const r = await node.kubectl(['create', '--raw', `/api/v1/namespaces/${NAMESPACE}/pods/${victim}/eviction`, '-f', '-'], eviction(victim));
      evictedAt = performance.now() - t0;
      evictedAtMs.value = Date.now();
      assert.equal(r.code, 0, `evicting ${victim}: ${r.stderr}`);
      // One replica is left and the replacement is not Ready yet: minAvailable 1 allows no disruption.
      secondEviction = await node.kubectl(['create', '--raw', `/api/v1/namespaces/${NAMESPACE}/pods/${other}/eviction`, '-f', '-'], eviction(other));
      // Keep the burst going through the victim's shutdown and until its replacement is Ready.
      await waitFor('the victim gone and two replicas Ready again', 4 * MINUTE, async () => {
        const pods = await node.scangatePods();
        return !pods.some((p) => p.metadata.name === victim) && pods.filter(ready).length === 2 ? true : undefined;
      }, () => '', 1000);
      await sleep(3000);
      stop = true;
    })();
    try {
      await controller;
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    const fastRun = await fast;
    assert.equal(fastRun.code, 0, `in-cluster-burst.js: ${fastRun.stderr}`);
    const burst = JSON.parse(fastRun.stdout.trim()) as { total: number; times: number[]; failures: { at: number; status: number; message: string }[] };
    const fastAfter = burst.times.filter((t) => t > evictedAtMs.value).length;
    log(`fast burst (dry-run creations, 8 at a time): ${String(burst.total)} in 30 s, ${String(fastAfter)} after the eviction, ${String(burst.failures.length)} failed` +
      (burst.failures.length > 0 ? `: ${JSON.stringify(burst.failures.slice(0, 5))}` : ''));
    assert.deepEqual(burst.failures, [], 'no dry-run pod creation failed while a scangate pod was going away');
    assert.ok(fastAfter >= 50, 'enough fast creations after the eviction to mean something');
    const failures = results.filter((r) => !r.ok);
    log(`burst: ${String(results.length)} pod creations in ${((performance.now() - t0) / 1000).toFixed(1)} s, eviction at ${(evictedAt / 1000).toFixed(1)} s, ` +
      `${String(results.filter((r) => r.at > evictedAt).length)} after it, ${String(failures.length)} failed`);
    assert.ok(secondEviction !== undefined && secondEviction.code !== 0, 'the PDB must refuse evicting the last Ready replica');
    assert.match(secondEviction.stderr, /disruption budget|TooManyRequests|429/i);
    assert.ok(results.filter((r) => r.at > evictedAt).length >= 10, 'enough creations after the eviction to mean something');
    assert.deepEqual(failures, [], 'no pod creation failed while a scangate pod was going away');
    const after = await node.scangatePods();
    assert.ok(after.some((p) => p.metadata.name === other), 'the PDB kept the other replica');
    await node.kubectlOk(['-n', WORKLOADS, 'delete', 'pods', '--all', '--wait=false']);
  }, 10 * MINUTE);

  scenario('5. helm upgrade --set mode=warn rolls the pods; the new setting takes effect (struts admitted with a warning)', async () => {
    const denied = await node.createPod(node.nextName('struts-enforce'), STRUTS);
    assert.notEqual(denied.code, 0, 'enforce mode denies struts');
    assert.match(denied.stderr, new RegExp(`${escapeRe(DENIED)}: Image failed policy check`));
    const before = new Set((await node.scangatePods()).map((p) => p.metadata.uid));
    await node.helmOk(['upgrade', RELEASE, chart, ...installArgs().filter((a) => a !== '--create-namespace'), '--set', 'mode=warn']);
    const pods = await node.waitForScangate('the rolled replicas Ready', 5 * MINUTE);
    for (const p of pods) assert.ok(!before.has(p.metadata.uid), `${p.metadata.name} is a new pod`);
    let last = '';
    const admitted = await waitFor('struts admitted with a warning (MODE=warn)', 2 * MINUTE, async () => {
      const r = await node.createPod(node.nextName('struts-warn'), STRUTS);
      last = r.stderr.trim();
      return r.code === 0 ? r : undefined;
    }, () => last, 1000);
    assert.match(admitted.stderr, /Warning: .*Image failed policy check/);
  });

  scenario('6. helm uninstall removes the webhook first; pod creation keeps working', async () => {
    await node.helmOk(['uninstall', RELEASE, '--namespace', NAMESPACE, '--wait', '--timeout', '3m']);
    const hooks = await node.kubectlOk(['get', 'validatingwebhookconfigurations', '-o', 'jsonpath={.items[*].metadata.name}']);
    assert.doesNotMatch(hooks, new RegExp(`\\b${RELEASE}\\b`));
    const r = await node.createPod(node.nextName('after-uninstall'), STRUTS);
    assert.equal(r.code, 0, `pod creation after uninstall: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /Warning/);
  });
});

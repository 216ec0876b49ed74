/**
 * End-to-end: break-glass and digest pinning against a real kube-apiserver (scripts/cluster-up.sh with
 * an audit log), scangate and the scanner simulator as local child processes, both webhook
 * configurations registered out-of-cluster by deploy.sh (PIN_DIGESTS=true).
 *
 * Humans are impersonated (`kubectl --as=alice`, `--as=mallory`) with a Role of their own in the test
 * namespaces. kube-controller-manager runs each controller as its own ServiceAccount
 * (--use-service-account-credentials=true), and no controller identity is trusted (issue 15): a pod
 * that a controller makes from a template breaking glass is admitted only on the proof scangate wrote
 * into the template when an allowed person (alice) asked (BREAK_GLASS_KEY_FILE), and the audit names
 * her. Skips like the other e2e suites when no control plane can be had, unless CI=true.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import {
  freePort,
  LocalProcess,
  logTo,
  MINUTE,
  missingCommands,
  ROOT,
  run,
  scenarios,
  scriptCheck,
  skipReason as suiteSkipReason,
  tailFile,
  waitFor,
  type RunResult,
} from './harness.js';

const STRUTS = 'kaizheh/apache-struts2-cve-2017-5638:2.3.12';
const CLEAN = 'nginx:1.25.3';
const DENIED = 'admission webhook "images.scangate.io" denied the request';
const GLASS_NS = 'glass';
const PIN_NS = 'pin';

const log = logTo('e2e break-glass/pinning');

function skipReason(): string | undefined {
  const problems = missingCommands(['kubectl', 'openssl', 'curl', 'make']);
  const check = scriptCheck('build-control-plane.sh', 'the control plane cannot be built');
  if (check !== undefined) problems.push(check);
  return suiteSkipReason(log, 'e2e needs a local control plane', problems);
}

/** Settings a developer may have exported: never inherited. */
const CALLER_SETTINGS =
  /^(ANCHORE_.*|SAMPLES_.*|WEBHOOK_.*|PIN_.*|BREAK_GLASS_.*|AUDIT_LOG|IMAGE_POLICY_.*|SCANGATE_RUN_DIR|SCANGATE_WATCH_PID|CA_BUNDLE_FILE|CA_FILE|OUT_DIR|NAMESPACE|EXEMPT_NAMESPACES|REJECT_IF_TIMEOUT|DENY_LATEST_TAG|MODE|REGISTRY_ALLOWLIST|VERIFY_WEBHOOK|ROLLOUT_TIMEOUT|POD_NAMESPACE|HOST|PORT|TLS_CERT_FILE|TLS_KEY_FILE|DEADLINE_MARGIN_MS|DEFAULT_TIMEOUT_MS|LOG_LEVEL|KUBECONFIG|CERT_DIR)$/;

interface AuditEvent {
  readonly verb?: string;
  readonly user?: { readonly username?: string };
  readonly impersonatedUser?: { readonly username?: string };
  readonly objectRef?: { readonly resource?: string; readonly namespace?: string; readonly name?: string };
  readonly annotations?: Record<string, string>;
  readonly stage?: string;
}

class Env {
  readonly runDir = mkdtempSync(join(tmpdir(), 'scangate-e2e-glass-'));
  readonly certDir = join(this.runDir, 'certs');
  readonly localDir = join(this.runDir, 'local');
  readonly kubeconfig = join(this.runDir, 'cluster', 'kubeconfig');
  readonly passFile = join(this.localDir, 'scanner-pass');
  readonly auditLog = join(this.runDir, 'cluster', 'logs', 'audit.log');
  sim: LocalProcess | undefined;
  simPort = 0;
  scangate: LocalProcess | undefined;
  scangatePort = 0;

  constructor() {
    mkdirSync(this.localDir, { recursive: true, mode: 0o700 });
  }

  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const inherited = Object.entries(process.env).filter(([key]) => !CALLER_SETTINGS.test(key));
    return { ...Object.fromEntries(inherited), SCANGATE_RUN_DIR: this.runDir, CERT_DIR: this.certDir, KUBECONFIG: this.kubeconfig, ...extra };
  }

  kubectl(args: readonly string[], input?: string): Promise<RunResult> {
    return run('kubectl', args, { env: this.env(), timeoutMs: 60_000, ...(input === undefined ? {} : { input }) });
  }

  async ok(args: readonly string[], input?: string): Promise<RunResult> {
    const r = await this.kubectl(args, input);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return r;
  }

  async script(name: string, extra: Record<string, string> = {}): Promise<RunResult> {
    const r = await run('bash', [join(ROOT, 'scripts', name)], { env: this.env(extra), timeoutMs: 5 * MINUTE });
    assert.equal(r.code, 0, `scripts/${name} exited ${String(r.code)}:\n${r.stdout}\n${r.stderr}`);
    return r;
  }

  async simStats(): Promise<{ addImage: number }> {
    const r = await fetch(`http://127.0.0.1:${String(this.simPort)}/_sim/stats`);
    return (await r.json()) as { addImage: number };
  }

  getScangate(path: string): Promise<number> {
    const ca = readFileSync(join(this.certDir, 'ca.crt'));
    return new Promise((resolve, reject) => {
      const req = httpsRequest(`https://127.0.0.1:${String(this.scangatePort)}${path}`, { ca, timeout: 3000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  /** scangate's JSON log lines with `msg`. */
  logLines(msg: string): Array<Record<string, unknown>> {
    if (this.scangate === undefined || !existsSync(this.scangate.logFile)) return [];
    return readFileSync(this.scangate.logFile, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l['msg'] === msg);
  }

  /** The API server's audit events (ResponseComplete) for one object. */
  audit(resource: string, namespace: string, name: string): AuditEvent[] {
    if (!existsSync(this.auditLog)) return [];
    return readFileSync(this.auditLog, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as AuditEvent)
      .filter((e) => e.stage === 'ResponseComplete' && e.objectRef?.resource === resource && e.objectRef.namespace === namespace && e.objectRef.name === name);
  }

  /** The API server's audit events (ResponseComplete) of one resource in one namespace. */
  auditOf(resource: string, namespace: string): AuditEvent[] {
    if (!existsSync(this.auditLog)) return [];
    return readFileSync(this.auditLog, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as AuditEvent)
      .filter((e) => e.stage === 'ResponseComplete' && e.objectRef?.resource === resource && e.objectRef.namespace === namespace);
  }

  diagnostics(): string {
    return [
      `--- scangate log (last 30 lines)`,
      this.scangate?.tail(30) ?? '',
      `--- kube-apiserver log (last 20 lines)`,
      tailFile(join(this.runDir, 'cluster/logs/kube-apiserver.log'), 20),
    ].join('\n');
  }
}

function pod(name: string, namespace: string, image: string, annotations: Record<string, string> = {}): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, annotations },
    spec: { containers: [{ name: 'app', image }] },
  });
}

function deployment(name: string, namespace: string, image: string, templateAnnotations: Record<string, string> = {}): string {
  return JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name }, annotations: templateAnnotations }, spec: { containers: [{ name: 'app', image }] } },
    },
  });
}

/** A Role letting the impersonated humans create pods and Deployments in `namespace`. */
function rbac(namespace: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: 'workloads', namespace },
        rules: [
          { apiGroups: [''], resources: ['pods'], verbs: ['create', 'get', 'list', 'delete'] },
          { apiGroups: ['apps'], resources: ['deployments'], verbs: ['create', 'get', 'list', 'update', 'patch', 'delete'] },
        ],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'workloads', namespace },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'workloads' },
        subjects: ['alice', 'mallory'].map((name) => ({ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name })),
      },
    ],
  });
}

const reason = skipReason();

describe('e2e: break-glass and digest pinning against kube-apiserver', { skip: reason ?? false }, () => {
  const e = new Env();
  const suite = scenarios(log, () => e.diagnostics(), 5 * MINUTE);
  const { scenario } = suite;

  before(
    async () => {
      try {
        const build = await run('bash', [join(ROOT, 'scripts/build-control-plane.sh')], { env: e.env(), stderrFile: join(e.runDir, 'build.log') });
        assert.equal(build.code, 0, `build-control-plane.sh:\n${tailFile(join(e.runDir, 'build.log'), 30)}`);
        const up = await run('bash', [join(ROOT, 'scripts/cluster-up.sh')], {
          env: e.env({ SCANGATE_WATCH_PID: String(process.pid), AUDIT_LOG: 'true' }),
          timeoutMs: 5 * MINUTE,
        });
        assert.equal(up.code, 0, `cluster-up.sh:\n${up.stderr}`);
        await e.script('gen-certs.sh');

        writeFileSync(e.passFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
        const keyFile = join(e.localDir, 'break-glass.key');
        writeFileSync(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
        e.simPort = await freePort();
        e.sim = LocalProcess.start(
          'scanner-sim',
          ['simulator/dist/main.js', '--host', '127.0.0.1', '--port', String(e.simPort), '--data', join(ROOT, 'simulator/scanner-data.json'),
            '--user', 'admin', '--pass-file', e.passFile],
          e.env(),
          join(e.localDir, 'scanner-sim.log'),
          join(e.localDir, 'scanner-sim.pid'),
        );
        await waitFor('the scanner simulator', 30_000, async () => ((await fetch(`http://127.0.0.1:${String(e.simPort)}/_sim/stats`).catch(() => undefined))?.ok === true ? true : undefined));

        e.scangatePort = await freePort();
        e.scangate = LocalProcess.start(
          'scangate',
          ['dist/src/main.js', 'serve'],
          e.env({
            ANCHORE_CLI_URL: `http://127.0.0.1:${String(e.simPort)}/v1`,
            ANCHORE_CLI_USER: 'admin',
            ANCHORE_CLI_PASS_FILE: e.passFile,
            POD_NAMESPACE: 'scangate',
            HOST: '127.0.0.1',
            PORT: String(e.scangatePort),
            TLS_CERT_FILE: join(e.certDir, 'tls.crt'),
            TLS_KEY_FILE: join(e.certDir, 'tls.key'),
            BREAK_GLASS_USERS: 'alice',
            BREAK_GLASS_KEY_FILE: keyFile,
            PIN_DIGESTS: 'true',
          }),
          join(e.localDir, 'scangate.log'),
          join(e.localDir, 'scangate.pid'),
        );
        await waitFor('scangate /readyz', 30_000, async () => ((await e.getScangate('/readyz').catch(() => 0)) === 200 ? true : undefined));
        await e.script('deploy.sh', { WEBHOOK_URL: `https://127.0.0.1:${String(e.scangatePort)}`, PIN_DIGESTS: 'true' });
        for (const ns of [GLASS_NS, PIN_NS]) {
          await e.ok(['create', 'namespace', ns]);
          await e.ok(['apply', '-f', '-'], rbac(ns));
          await waitFor(`${ns}/default ServiceAccount`, 60_000, async () => ((await e.kubectl(['-n', ns, 'get', 'serviceaccount', 'default'])).code === 0 ? true : undefined));
        }
        // The webhook is live once the API server refuses an implied :latest through it.
        let last = '';
        await waitFor('the webhook to be called', 30_000, async () => {
          const r = await e.kubectl(['create', '--dry-run=server', '-f', '-'], pod('probe', GLASS_NS, 'nginx'));
          last = r.stderr;
          return r.stderr.includes(`${DENIED}: Images using latest tag`) ? true : undefined;
        }, () => last);
      } catch (err) {
        suite.failed = true;
        log(`set-up FAILED: ${String(err)}\n${e.diagnostics()}`);
        throw err;
      }
    },
    { timeout: 50 * MINUTE },
  );

  after(
    async () => {
      await e.scangate?.stop();
      await e.sim?.stop();
      const down = await run('bash', [join(ROOT, 'scripts/cluster-down.sh'), '--keep-logs'], { env: e.env(), timeoutMs: MINUTE });
      if (down.code !== 0) log(`cluster-down.sh exited ${String(down.code)}: ${down.stderr}`);
      if (suite.failed) log(`failures: logs kept in ${e.runDir}`);
      else rmSync(e.runDir, { recursive: true, force: true });
    },
    { timeout: 2 * MINUTE },
  );

  scenario('1. break-glass by an allowed user (kubectl --as=alice): admitted with a warning; audited in the API server\'s audit log', async () => {
    const r = await e.kubectl(['--as=alice', 'create', '-f', '-'], pod('struts-glass', GLASS_NS, STRUTS, { 'scangate.io/break-glass': 'INC-4711 checkout down' }));
    assert.equal(r.code, 0, `alice's break-glass pod must be admitted: ${r.stderr}`);
    assert.match(r.stderr, /Warning: Break-glass used by "alice" \(reason: "INC-4711 checkout down"\): admitted despite: Image failed policy check: kaizheh\/apache-struts2/);
    // scangate's log file is written asynchronously (pino): the line may land a moment after the answer.
    const line = await waitFor('the break-glass log line', 10_000, () => Promise.resolve(e.logLines('break-glass').find((l) => l['pod'] === 'struts-glass')), () => '', 100);
    assert.equal(line?.['user'], 'alice');
    assert.equal(line?.['outcome'], 'admitted');
    const event = await waitFor('the audit event of the pod', 30_000, () => Promise.resolve(e.audit('pods', GLASS_NS, 'struts-glass').find((x) => x.verb === 'create')));
    assert.equal(event.impersonatedUser?.username, 'alice');
    assert.equal(event.annotations?.['images.scangate.io/break-glass'], 'admitted');
    assert.equal(event.annotations?.['images.scangate.io/break-glass-user'], 'alice');
    assert.equal(event.annotations?.['images.scangate.io/break-glass-reason'], 'INC-4711 checkout down');
    assert.match(event.annotations?.['images.scangate.io/images'] ?? '', /=fail@sha256:[0-9a-f]{64}/);
  });

  scenario('2. break-glass by anyone else (kubectl --as=mallory): refused, saying they may not break glass', async () => {
    const r = await e.kubectl(['--as=mallory', 'create', '-f', '-'], pod('struts-mallory', GLASS_NS, STRUTS, { 'scangate.io/break-glass': 'trust me' }));
    assert.notEqual(r.code, 0, 'mallory must be refused');
    assert.match(r.stderr, new RegExp(`${DENIED.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: Break-glass not permitted: user "mallory" may not break glass`));
    const clean = await e.kubectl(['--as=mallory', 'create', '-f', '-'], pod('clean-mallory', GLASS_NS, CLEAN));
    assert.equal(clean.code, 0, `mallory's ordinary pod is admitted: ${clean.stderr}`);
    // Ordinary decisions are audited too: the verdict and the scanned digest.
    const event = await waitFor('the audit event of the ordinary pod', 30_000, () => Promise.resolve(e.audit('pods', GLASS_NS, 'clean-mallory').find((x) => x.verb === 'create')));
    assert.equal(event.annotations?.['images.scangate.io/decision'], 'allowed');
    assert.match(event.annotations?.['images.scangate.io/images'] ?? '', /=pass@sha256:[0-9a-f]{64}$/);
  });

  scenario('3. a Deployment whose template breaks glass (created by alice): its pods come up, and their audit names alice, not a controller', async () => {
    await e.ok(['--as=alice', 'create', '-f', '-'], deployment('struts-dep', GLASS_NS, STRUTS, { 'scangate.io/break-glass': 'INC-4711' }));
    const pods = await waitFor('a pod of the Deployment', 60_000, async () => {
      const r = await e.kubectl(['-n', GLASS_NS, 'get', 'pods', '-l', 'app=struts-dep', '-o', 'jsonpath={.items[*].metadata.name}']);
      return r.stdout.trim() !== '' ? r.stdout.trim() : undefined;
    });
    assert.ok(pods.startsWith('struts-dep-'));
    // The ReplicaSet controller created the pod (under its own ServiceAccount); the break-glass it
    // carried is recorded under the person who granted it.
    const event = await waitFor('the audit event of the controller-made pod', 30_000, () =>
      Promise.resolve(
        e.auditOf('pods', GLASS_NS).find(
          (x) => x.verb === 'create' && x.user?.username === 'system:serviceaccount:kube-system:replicaset-controller' && x.annotations?.['images.scangate.io/break-glass'] === 'admitted',
        ),
      ),
    );
    assert.equal(event.annotations?.['images.scangate.io/break-glass-user'], 'alice');
    assert.equal(event.annotations?.['images.scangate.io/break-glass-reason'], 'INC-4711');
  });

  scenario('4. pinning: the created pod\'s spec shows the scanned digest; the validating step made no second scan', async () => {
    const before = (await e.simStats()).addImage;
    await e.ok(['create', '-f', '-'], pod('pinned', PIN_NS, 'bitnami/nginx:1.25'));
    const image = (await e.ok(['-n', PIN_NS, 'get', 'pod', 'pinned', '-o', 'jsonpath={.spec.containers[0].image}'])).stdout;
    const pinLine = await waitFor('the pin log line', 10_000, () =>
      Promise.resolve(e.logLines('pin').find((l) => (l['pinned'] as Array<{ image: string; digest: string }> | undefined)?.some((p) => p.image === 'bitnami/nginx:1.25'))), () => '', 100);
    const digest = (pinLine?.['pinned'] as Array<{ digest: string }> | undefined)?.[0]?.digest ?? '';
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(image, `bitnami/nginx:1.25@${digest}`);
    assert.equal((await e.simStats()).addImage, before + 1, 'one scan for the mutating and the validating step together');
    const decision = await waitFor('the decision log line', 10_000, () =>
      Promise.resolve(e.logLines('decision').find((l) => (l['images'] as Array<{ image: string }> | undefined)?.some((i) => i.image === image))), () => '', 100);
    assert.deepEqual(decision?.['cache'], { hit: 1, miss: 0, shared: 0 });
  });

  scenario('5. pinning a Deployment: the template is pinned, so its pods run the digest too', async () => {
    await e.ok(['create', '-f', '-'], deployment('web', PIN_NS, CLEAN));
    const image = (await e.ok(['-n', PIN_NS, 'get', 'deployment', 'web', '-o', 'jsonpath={.spec.template.spec.containers[0].image}'])).stdout;
    assert.match(image, /^nginx:1\.25\.3@sha256:[0-9a-f]{64}$/);
    const podImage = await waitFor('a pod of the pinned Deployment', 60_000, async () => {
      const r = await e.kubectl(['-n', PIN_NS, 'get', 'pods', '-l', 'app=web', '-o', 'jsonpath={.items[0].spec.containers[0].image}']);
      return r.code === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : undefined;
    });
    assert.equal(podImage, image);
  });
});

/**
 * The Helm chart (charts/scangate) against a real kube-apiserver (scripts/cluster-up.sh, no kubelet:
 * scangate's pods stay Pending, which is what makes the webhook's failurePolicy visible).
 *
 *  1. scripts/check-chart.sh: `helm lint --strict` clean, `helm template` of every value set in
 *     charts/scangate/ci/, server-side dry run of every rendered object accepted; and a broken chart
 *     is refused by that same dry run (the check can fail).
 *  2. The settings the chart writes are scangate's own defaults (src/config.ts DEFAULTS), except the
 *     ones the chart changes on purpose; its webhook entries (validating, and mutating with digest
 *     pinning) are those of manifests/ (deploy.sh's out-of-cluster registration), so the two places
 *     cannot drift apart; make deploy over an
 *     out-of-cluster registration stops and leaves it as it was.
 *  3. `make deploy` (helm upgrade --install): the webhook configuration names the Service, path and
 *     port, its caBundle is the CA in the TLS Secret, which signed the serving certificate for the
 *     Service's DNS name; the password is nowhere in helm's release data or the rendered objects; with
 *     no pod running, failurePolicy Fail refuses pod creation outside the exempt namespaces.
 *  4. `helm upgrade` with a changed setting keeps the certificate and the caBundle byte for byte, and
 *     rolls the pods' checksum; renewal (inside renewBeforeDays) issues a new certificate and keeps
 *     the old CA in the caBundle beside the new one.
 *  5. `helm uninstall` deletes the webhook configuration before any other object (helm's own log of
 *     its delete calls, and a Service held by a finalizer is still there when the webhook is already
 *     gone), and pod creation works afterwards.
 *  6. cert-manager mode: Certificate and Issuers accepted by cert-manager's CRDs; the webhook carries
 *     cert-manager.io/inject-ca-from and no caBundle of the chart's.
 *  7. `make deploy` whose pods never become Ready is undone (--rollback-on-failure): no webhook left.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe } from 'node:test';
import { DEFAULTS } from '../../src/config.js';
import { logTo, MINUTE, missingCommands, ROOT, run, scenarios, scriptCheck, skipReason as suiteSkipReason, tailFile, waitFor, type RunResult } from './harness.js';

const NAMESPACE = 'scangate';
const RELEASE = 'scangate';

const log = logTo('chart');

function skipReason(): string | undefined {
  const problems = missingCommands(['kubectl', 'openssl', 'curl', 'make']);
  for (const script of ['build-control-plane.sh', 'build-helm.sh']) {
    const p = scriptCheck(script);
    if (p !== undefined) problems.push(p);
  }
  return suiteSkipReason(log, 'the chart suite needs helm and a local control plane', problems);
}

/** Variables of the scripts and of scangate a developer may have exported: never inherited. */
const CALLER_SETTINGS =
  /^(ANCHORE_.*|SAMPLES_.*|WEBHOOK_.*|HELM_.*|SCANGATE_RUN_DIR|SCANGATE_WATCH_PID|CA_BUNDLE_FILE|NAMESPACE|RELEASE|EXEMPT_NAMESPACES|IMAGE|REJECT_IF_TIMEOUT|DENY_LATEST_TAG|MODE|REGISTRY_ALLOWLIST|VERIFY_WEBHOOK|ROLLOUT_TIMEOUT|LOG_LEVEL|KUBECONFIG|CERT_DIR|CHART|CHECK_NAMESPACE)$/;

interface WebhookClientConfig {
  readonly url?: string;
  readonly caBundle?: string;
  readonly service?: { readonly namespace: string; readonly name: string; readonly path?: string; readonly port?: number };
}
interface Webhook {
  readonly name: string;
  readonly clientConfig: WebhookClientConfig;
  readonly failurePolicy?: string;
  readonly [key: string]: unknown;
}
interface WebhookConfiguration {
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly uid: string; readonly annotations?: Record<string, string> };
  readonly webhooks?: readonly Webhook[];
}
interface K8sList<T> {
  readonly items: readonly T[];
}
interface SecretObject {
  readonly metadata: { readonly resourceVersion: string; readonly annotations?: Record<string, string> };
  readonly data: Record<string, string>;
}

const b64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');

/** The PEM certificates in a bundle, in order. */
function pemCerts(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

class ChartCluster {
  readonly runDir = mkdtempSync(join(tmpdir(), 'scangate-chart-'));
  readonly kubeconfig = join(this.runDir, 'cluster', 'kubeconfig');
  helm = '';

  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const inherited = Object.entries(process.env).filter(([key]) => !CALLER_SETTINGS.test(key));
    return { ...Object.fromEntries(inherited), SCANGATE_RUN_DIR: this.runDir, KUBECONFIG: this.kubeconfig, HELM: this.helm, ...extra };
  }

  kubectl(args: readonly string[], input?: string): Promise<RunResult> {
    return run('kubectl', args, { env: this.env(), timeoutMs: 60_000, ...(input === undefined ? {} : { input }) });
  }

  async json<T>(args: readonly string[]): Promise<T> {
    const r = await this.kubectl([...args, '-o', 'json']);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  helmRun(args: readonly string[], extra: Record<string, string> = {}): Promise<RunResult> {
    return run(this.helm, args, { env: this.env(extra), timeoutMs: 5 * MINUTE });
  }

  async script(name: string, args: readonly string[] = [], extra: Record<string, string> = {}): Promise<RunResult> {
    const r = await run('bash', [join(ROOT, 'scripts', name), ...args], { env: this.env(extra), timeoutMs: 10 * MINUTE });
    assert.equal(r.code, 0, `scripts/${name} ${args.join(' ')} exited ${String(r.code)}:\n${r.stdout}\n${r.stderr}`);
    return r;
  }

  async make(target: string, extra: Record<string, string>): Promise<RunResult> {
    const r = await run('make', ['--no-print-directory', '-C', ROOT, target], { env: this.env(extra), timeoutMs: 10 * MINUTE });
    assert.equal(r.code, 0, `make ${target} exited ${String(r.code)}:\n${r.stdout}\n${r.stderr}`);
    return r;
  }

  /** Server-side dry run of a bare pod in `namespace`: what the admission chain says about it. */
  async tryPod(namespace: string): Promise<RunResult> {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'probe-', namespace },
      // Fits Pod Security "restricted", enforced in scangate's namespace.
      spec: {
        securityContext: { runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [{ name: 'probe', image: 'nginx:1.25.3', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }],
      },
    };
    return this.kubectl(['create', '--dry-run=server', '-f', '-'], JSON.stringify(pod));
  }

  async webhookConfigurations(): Promise<WebhookConfiguration[]> {
    const out: WebhookConfiguration[] = [];
    for (const kind of ['validatingwebhookconfigurations', 'mutatingwebhookconfigurations']) {
      const list = await this.json<K8sList<WebhookConfiguration>>(['get', kind, '-l', 'app.kubernetes.io/part-of=scangate']);
      out.push(...list.items.map((i) => ({ ...i, kind: kind.startsWith('validating') ? 'ValidatingWebhookConfiguration' : 'MutatingWebhookConfiguration' })));
    }
    return out;
  }

  async tlsSecret(namespace = NAMESPACE): Promise<SecretObject> {
    return this.json<SecretObject>(['-n', namespace, 'get', 'secret', `${RELEASE}-tls`]);
  }

  async diagnostics(): Promise<string> {
    const events = await this.kubectl(['get', 'events', '-A']).catch(() => undefined);
    return [
      '--- kube-apiserver log (last 30 lines)',
      tailFile(join(this.runDir, 'cluster/logs/kube-apiserver.log'), 30),
      '--- kubectl get events -A (last 20)',
      events === undefined ? '(kubectl failed)' : events.stdout.trimEnd().split('\n').slice(-20).join('\n'),
    ].join('\n');
  }
}

/** A webhook entry without what legitimately differs between in-cluster and out-of-cluster. */
function comparable(kind: string, w: Webhook): Record<string, unknown> {
  const { clientConfig, ...rest } = w;
  const path = clientConfig.service?.path ?? (clientConfig.url === undefined ? undefined : new URL(clientConfig.url).pathname);
  return { kind, ...rest, path };
}

const reason = skipReason();

describe('chart: charts/scangate against kube-apiserver', { skip: reason ?? false }, () => {
  const cluster = new ChartCluster();
  const suite = scenarios(log, () => cluster.diagnostics(), 10 * MINUTE);
  const { scenario } = suite;
  const password = `pw-${randomBytes(12).toString('hex')}`;
  const deployEnv = (extra: Record<string, string> = {}): Record<string, string> => ({
    ANCHORE_CLI_URL: 'http://anchore.example.invalid:8228/v1',
    ANCHORE_CLI_USER: 'admin',
    ANCHORE_CLI_PASS: password,
    ROLLOUT_TIMEOUT: '0',
    ...extra,
  });


  before(
    async () => {
      log(`state directory ${cluster.runDir}`);
      const started = performance.now();
      const buildLog = join(cluster.runDir, 'build.log');
      const heartbeat = setInterval(() => log(`still building (${((performance.now() - started) / MINUTE).toFixed(1)} min; ${buildLog})`), MINUTE);
      try {
        // One after the other: the two builds share 2 cores.
        const cp = await run('bash', [join(ROOT, 'scripts/build-control-plane.sh')], { env: cluster.env(), stderrFile: buildLog });
        assert.equal(cp.code, 0, `build-control-plane.sh failed:\n${tailFile(buildLog, 40)}`);
        const helm = await run('bash', [join(ROOT, 'scripts/build-helm.sh')], { env: cluster.env(), stderrFile: buildLog });
        assert.equal(helm.code, 0, `build-helm.sh failed:\n${tailFile(buildLog, 40)}`);
        cluster.helm = helm.stdout.trim();
      } finally {
        clearInterval(heartbeat);
      }
      log(`helm and control plane ready in ${((performance.now() - started) / 1000).toFixed(1)} s: ${cluster.helm}`);
      const up = await run('bash', [join(ROOT, 'scripts/cluster-up.sh')], {
        env: cluster.env({ SCANGATE_WATCH_PID: String(process.pid) }),
        timeoutMs: 5 * MINUTE,
      });
      assert.equal(up.code, 0, `cluster-up.sh failed:\n${up.stderr}`);
    },
    { timeout: 60 * MINUTE },
  );

  after(
    async () => {
      const down = await run('bash', [join(ROOT, 'scripts/cluster-down.sh'), '--keep-logs'], { env: cluster.env(), timeoutMs: MINUTE });
      if (down.code !== 0) log(`cluster-down.sh exited ${String(down.code)}: ${down.stderr}`);
      if (suite.failed) log(`failures: logs kept in ${cluster.runDir}`);
      else rmSync(cluster.runDir, { recursive: true, force: true });
    },
    { timeout: 2 * MINUTE },
  );

  scenario('1. check-chart.sh: lint --strict clean, every value set renders and passes server-side dry run', async () => {
    const r = await cluster.script('check-chart.sh');
    for (const set of ['default', 'existing-secret', 'cert-manager', 'cert-manager-issuer', 'warn-mode', 'network-policy']) {
      assert.match(r.stderr, new RegExp(`lint --strict ${set}: clean`));
      assert.match(r.stderr, new RegExp(`dry-run=server ${set}: accepted \\(\\d+ objects\\)`));
    }
    assert.match(r.stderr, /template without scanner\.url: refused/);
    assert.match(r.stderr, /template with networkPolicy\.enabled and no peer: refused/);
    assert.doesNotMatch(r.stderr, /FAIL: /);

    // The same checks refuse what is wrong: a value outside the schema fails lint; an object the API
    // server would reject (a Service port that is not a number) fails the dry run.
    const lint = await cluster.helmRun(['lint', '--strict', join(ROOT, 'charts/scangate'), '--set', 'scanner.url=https://a.example/v2', '--set', 'webhook.timeoutSeconds=31']);
    assert.notEqual(lint.code, 0, 'timeoutSeconds 31 must fail lint');
    assert.match(lint.stdout + lint.stderr, /timeoutSeconds/);
    const broken = join(cluster.runDir, 'broken-chart');
    cpSync(join(ROOT, 'charts/scangate'), broken, { recursive: true });
    const svc = join(broken, 'templates/service.yaml');
    writeFileSync(svc, readFileSync(svc, 'utf8').replace(/port: \{\{ .Values.service.port \| int64 \}\}/, 'port: 70000'));
    const check = await run('bash', [join(ROOT, 'scripts/check-chart.sh')], { env: cluster.env({ CHART: broken }), timeoutMs: 10 * MINUTE });
    assert.notEqual(check.code, 0, 'a Service with port 70000 must fail the server-side dry run');
    assert.match(check.stderr, /FAIL: kubectl apply --dry-run=server/);
  });

  scenario('2. the chart sets scangate\'s own defaults; its webhook entries are those of manifests/', async () => {
    const rendered = await cluster.helmRun(['template', RELEASE, join(ROOT, 'charts/scangate'), '-n', NAMESPACE, '--set', 'scanner.url=http://x.example:8228/v1', '--show-only', 'templates/configmap.yaml']);
    assert.equal(rendered.code, 0, rendered.stderr);
    // kubectl as the YAML reader.
    const asJson = await cluster.kubectl(['create', '--dry-run=client', '-o', 'json', '-f', '-'], rendered.stdout);
    assert.equal(asJson.code, 0, asJson.stderr);
    const data = (JSON.parse(asJson.stdout) as { data: Record<string, string> }).data;
    // On purpose: a cluster needs a shutdown delay, scangate's own namespace is exempt, the URL is required.
    // And events on: the chart makes their RBAC (EVENTS_ENABLED auto would find the token as well).
    const deliberate: Record<string, string> = { SHUTDOWN_DELAY_MS: '5000', EXEMPT_NAMESPACES: `kube-system,${NAMESPACE}`, ANCHORE_CLI_URL: 'http://x.example:8228/v1', EVENTS_ENABLED: 'true' };
    const defaults = DEFAULTS as Record<string, string>;
    for (const [key, value] of Object.entries(data)) {
      if (key in deliberate) assert.equal(value, deliberate[key], key);
      else assert.equal(value, defaults[key], `${key}: the chart writes ${value}, scangate's default is ${String(defaults[key])}`);
    }
    // The chart's own environment (container env, credentials files) covers the rest; a setting named
    // nowhere is reachable through the chart's `env` map, and said here.
    // BREAK_GLASS_KEY_FILE is the container's (the Secret the chart mounts), like the TLS files.
    const handled = new Set([...Object.keys(data), 'HOST', 'PORT', 'INSECURE_HTTP', 'ANCHORE_CLI_USER', 'ANCHORE_CLI_PASS', 'BREAK_GLASS_KEY_FILE']);
    const unnamed = Object.keys(DEFAULTS).filter((k) => !handled.has(k));
    if (unnamed.length > 0) log(`settings without a chart value (set them through env): ${unnamed.join(', ')}`);

    // manifests/: what deploy.sh registers out-of-cluster, read back from the API server.
    const entries = (list: WebhookConfiguration[]): Record<string, unknown>[] =>
      list.flatMap((c) => (c.webhooks ?? []).map((w) => comparable(c.kind, w))).sort((a, b) => `${String(a['kind'])}/${String(a['name'])}`.localeCompare(`${String(b['kind'])}/${String(b['name'])}`));
    const outOfCluster = { WEBHOOK_URL: 'https://127.0.0.1:9/', VERIFY_WEBHOOK: 'false', CERT_DIR: join(cluster.runDir, 'certs') };
    await cluster.script('deploy.sh', [], outOfCluster);
    const registered = await cluster.webhookConfigurations();
    assert.ok(registered.length >= 1);
    // make deploy over the out-of-cluster registration stops, naming the way out; then the chart's
    // entries, installed by make deploy, read back the same way.
    const over = await run('make', ['--no-print-directory', '-C', ROOT, 'deploy'], { env: cluster.env(deployEnv()), timeoutMs: 5 * MINUTE });
    assert.notEqual(over.code, 0, 'make deploy over an out-of-cluster registration must stop');
    assert.match(over.stderr, /validatingwebhookconfiguration scangate is an out-of-cluster registration \(WEBHOOK_URL\): remove it first with make undeploy/);
    assert.deepEqual((await cluster.webhookConfigurations()).map((c) => c.metadata.uid), registered.map((c) => c.metadata.uid), 'left as it was');
    // With digest pinning (PIN_DIGESTS=true: a MutatingWebhookConfiguration too), then without.
    await cluster.script('deploy.sh', [], { ...outOfCluster, PIN_DIGESTS: 'true' });
    const registeredPinned = await cluster.webhookConfigurations();
    assert.ok(registeredPinned.some((c) => c.kind === 'MutatingWebhookConfiguration'), 'deploy.sh registers the pinning webhook with PIN_DIGESTS=true');
    await cluster.script('undeploy.sh');
    const drift = 'charts/scangate and manifests/ register different webhooks: carry the change to the other place';
    for (const [pin, expected] of [['true', registeredPinned], ['false', registered]] as const) {
      await cluster.make('deploy', deployEnv({ PIN_DIGESTS: pin }));
      const charted = await cluster.webhookConfigurations();
      assert.ok(charted.every((c) => c.webhooks?.every((w) => w.clientConfig.service?.name === RELEASE && w.clientConfig.url === undefined)), 'sent to the Service');
      assert.deepEqual(entries(charted), entries(expected), `PIN_DIGESTS=${pin}: ${drift}`);
    }
  });

  scenario('3. make deploy (helm): Service, path, caBundle = the CA of the serving certificate; no password anywhere; Fail blocks pods', async () => {
    const [vwc] = (await cluster.webhookConfigurations()).filter((c) => c.kind === 'ValidatingWebhookConfiguration');
    assert.ok(vwc !== undefined, 'a ValidatingWebhookConfiguration');
    const hook = vwc.webhooks?.find((w) => w.name === 'images.scangate.io');
    assert.ok(hook !== undefined);
    assert.deepEqual(hook.clientConfig.service, { namespace: NAMESPACE, name: RELEASE, path: '/validate', port: 443 });
    assert.equal(hook.clientConfig.url, undefined);
    assert.equal(hook.failurePolicy, 'Fail');
    assert.equal(hook['timeoutSeconds'], 30);

    const secret = await cluster.tlsSecret();
    const ca = b64(secret.data['ca.crt'] ?? '');
    assert.deepEqual(pemCerts(b64(hook.clientConfig.caBundle ?? '')), pemCerts(ca), 'caBundle is the Secret\'s CA');
    const caCert = new X509Certificate(ca);
    assert.ok(new X509Certificate(b64(secret.data['tls.crt'] ?? '')).checkPrivateKey(createPrivateKey(b64(secret.data['tls.key'] ?? ''))), 'tls.key is the key of tls.crt');
    const serving = new X509Certificate(b64(secret.data['tls.crt'] ?? ''));
    assert.ok(serving.verify(caCert.publicKey), 'the serving certificate is signed by that CA');
    assert.ok(serving.checkHost(`${RELEASE}.${NAMESPACE}.svc`) !== undefined, `serving certificate names ${RELEASE}.${NAMESPACE}.svc: ${String(serving.subjectAltName)}`);
    assert.equal(caCert.ca, true);

    const deployment = await cluster.json<{ spec: { replicas: number; template: { spec: Record<string, unknown> & { containers: Record<string, unknown>[] } } } }>(['-n', NAMESPACE, 'get', 'deployment', RELEASE]);
    assert.equal(deployment.spec.replicas, 2);
    const podSpec = deployment.spec.template.spec;
    assert.equal(podSpec['terminationGracePeriodSeconds'], 35);
    assert.deepEqual(podSpec['securityContext'], { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } });
    const container = podSpec.containers[0] ?? {};
    assert.deepEqual(container['securityContext'], { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } });
    assert.deepEqual((container['readinessProbe'] as { httpGet: unknown }).httpGet, { path: '/readyz', port: 'https', scheme: 'HTTPS' });
    assert.deepEqual((container['livenessProbe'] as { httpGet: unknown }).httpGet, { path: '/healthz', port: 'https', scheme: 'HTTPS' });
    const pdb = await cluster.json<{ spec: { minAvailable: number } }>(['-n', NAMESPACE, 'get', 'pdb', RELEASE]);
    assert.equal(pdb.spec.minAvailable, 1);

    // The password: in the scanner Secret only. Not in helm's values, manifest, notes or release record
    // (any encoding: the release record is gzip+base64 inside a Secret), not in the objects.
    const all = await cluster.helmRun(['get', 'all', RELEASE, '-n', NAMESPACE]);
    assert.equal(all.code, 0, all.stderr);
    assert.ok(!all.stdout.includes(password), 'helm get all shows the password');
    const releases = await cluster.json<K8sList<{ data: { release: string } }>>(['-n', NAMESPACE, 'get', 'secrets', '-l', `owner=helm,name=${RELEASE}`]);
    assert.ok(releases.items.length >= 1);
    for (const item of releases.items) {
      const record = gunzipSync(Buffer.from(b64(item.data.release), 'base64')).toString('utf8');
      assert.ok(!record.includes(password), 'helm release record holds the password');
      assert.ok(!record.includes(Buffer.from(password).toString('base64')), 'helm release record holds the password in base64');
    }
    const objects = await cluster.kubectl(['-n', NAMESPACE, 'get', 'deployment,configmap,service,pdb', '-o', 'json']);
    assert.ok(!objects.stdout.includes(password));
    const scanner = await cluster.json<SecretObject>(['-n', NAMESPACE, 'get', 'secret', 'scangate-scanner']);
    assert.equal(b64(scanner.data['pass'] ?? ''), password, 'the credentials are in the scanner Secret');

    // No scangate pod is running (no kubelet): failurePolicy Fail refuses pods outside the exempt
    // namespaces, and kube-system and scangate's own namespace are not even sent to it.
    const refused = await cluster.tryPod('default');
    assert.notEqual(refused.code, 0, 'with no scangate pod, failurePolicy Fail must refuse the pod');
    assert.match(refused.stderr, /failed calling webhook "images\.scangate\.io"/);
    for (const ns of ['kube-system', NAMESPACE]) {
      const exempt = await cluster.tryPod(ns);
      assert.equal(exempt.code, 0, `${ns} is exempt: ${exempt.stderr}`);
    }
  });

  scenario('4. helm upgrade keeps the certificate and the caBundle; renewal keeps the old CA trusted', async () => {
    const before = await cluster.tlsSecret();
    const hookBefore = (await cluster.webhookConfigurations())[0]?.webhooks?.[0]?.clientConfig.caBundle;
    const podTemplate = async (): Promise<Record<string, string>> =>
      (await cluster.json<{ spec: { template: { metadata: { annotations: Record<string, string> } } } }>(['-n', NAMESPACE, 'get', 'deployment', RELEASE])).spec.template.metadata.annotations;
    const annotationsBefore = await podTemplate();

    await cluster.make('deploy', deployEnv({ MODE: 'warn' }));
    const afterUpgrade = await cluster.tlsSecret();
    assert.deepEqual(afterUpgrade.data, before.data, 'the TLS Secret is unchanged by helm upgrade');
    assert.equal(afterUpgrade.metadata.resourceVersion, before.metadata.resourceVersion, 'the TLS Secret was not even rewritten');
    assert.equal((await cluster.webhookConfigurations())[0]?.webhooks?.[0]?.clientConfig.caBundle, hookBefore, 'caBundle unchanged');
    const config = await cluster.json<{ data: Record<string, string> }>(['-n', NAMESPACE, 'get', 'configmap', `${RELEASE}-config`]);
    assert.equal(config.data['MODE'], 'warn', 'the new setting reached the ConfigMap');
    const annotationsAfter = await podTemplate();
    assert.notEqual(annotationsAfter['scangate.io/config-checksum'], annotationsBefore['scangate.io/config-checksum'], 'the pods roll');

    // Renewal: an upgrade inside renewBeforeDays issues a new certificate and CA; the caBundle holds
    // both CAs, so pods still serving the old certificate (until they reload it) stay trusted.
    await cluster.make('deploy', deployEnv({ MODE: 'warn', HELM_ARGS: '--set tls.renewBeforeDays=3000' }));
    const renewed = await cluster.tlsSecret();
    assert.notEqual(renewed.data['tls.crt'], before.data['tls.crt'], 'a new serving certificate');
    const bundle = pemCerts(b64((await cluster.webhookConfigurations())[0]?.webhooks?.[0]?.clientConfig.caBundle ?? ''));
    assert.deepEqual(bundle, [...pemCerts(b64(renewed.data['ca.crt'] ?? '')), ...pemCerts(b64(before.data['ca.crt'] ?? ''))], 'caBundle = new CA + old CA');
    const newServing = new X509Certificate(b64(renewed.data['tls.crt'] ?? ''));
    assert.ok(newServing.verify(new X509Certificate(b64(renewed.data['ca.crt'] ?? '')).publicKey));
    // And the next plain upgrade keeps the renewed certificate.
    await cluster.make('deploy', deployEnv({ MODE: 'warn' }));
    assert.deepEqual((await cluster.tlsSecret()).data, renewed.data);
  });

  scenario('5. helm uninstall: the webhook configuration goes first; pod creation works afterwards', async () => {
    assert.notEqual((await cluster.tryPod('default')).code, 0, 'precondition: pods are refused while the webhook is registered');
    // A finalizer holds the Service: helm's delete of it is accepted but the object stays, so what is
    // seen while it is held is the state between helm's delete calls.
    const hold = await cluster.kubectl(['-n', NAMESPACE, 'patch', 'service', RELEASE, '--type=merge', '-p', '{"metadata":{"finalizers":["scangate.io/test-hold"]}}']);
    assert.equal(hold.code, 0, hold.stderr);
    const uninstall = await cluster.helmRun(['uninstall', RELEASE, '-n', NAMESPACE, '--debug']);
    assert.equal(uninstall.code, 0, uninstall.stderr);
    const deletes = [...(uninstall.stdout + uninstall.stderr).matchAll(/starting delete resource.*?kind=(\w+)/g)].map((m) => m[1]);
    assert.ok(deletes.length >= 6, `helm logged its deletes: ${deletes.join(', ')}`);
    assert.equal(deletes[0], 'ValidatingWebhookConfiguration', `helm's delete order: ${deletes.join(', ')}`);
    const lastHook = deletes.lastIndexOf('ValidatingWebhookConfiguration');
    assert.ok(deletes.slice(0, lastHook + 1).every((k) => k === 'ValidatingWebhookConfiguration' || k === 'MutatingWebhookConfiguration'), `webhook configurations before anything else: ${deletes.join(', ')}`);

    const service = await cluster.json<{ metadata: { deletionTimestamp?: string } }>(['-n', NAMESPACE, 'get', 'service', RELEASE]);
    assert.ok(service.metadata.deletionTimestamp !== undefined, 'the Service is being deleted, held by the finalizer');
    assert.deepEqual(await cluster.webhookConfigurations(), [], 'no webhook configuration is left while the Service still exists');
    await waitFor('pod creation in default to be admitted', 30_000, async () => ((await cluster.tryPod('default')).code === 0 ? true : undefined));
    await cluster.kubectl(['-n', NAMESPACE, 'patch', 'service', RELEASE, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
    await cluster.script('undeploy.sh');
    const ok = await cluster.tryPod('default');
    assert.equal(ok.code, 0, `pod creation after uninstall: ${ok.stderr}`);
  });

  scenario('6. cert-manager: Certificate + inject-ca-from annotation, no chart-made caBundle', async () => {
    const ns = 'scangate-cm';
    await cluster.kubectl(['create', 'namespace', ns]);
    await cluster.kubectl(['-n', ns, 'create', 'secret', 'generic', 'anchore-credentials', '--from-literal=user=admin', '--from-literal=pass=x']);
    const install = await cluster.helmRun(['install', RELEASE, join(ROOT, 'charts/scangate'), '-n', ns, '-f', join(ROOT, 'charts/scangate/ci/cert-manager-values.yaml')]);
    assert.equal(install.code, 0, install.stderr);
    const [vwc] = await cluster.webhookConfigurations();
    assert.ok(vwc !== undefined);
    assert.equal(vwc.metadata.annotations?.['cert-manager.io/inject-ca-from'], `${ns}/${RELEASE}-tls`);
    assert.equal(vwc.webhooks?.[0]?.clientConfig.caBundle, undefined, 'cert-manager injects the caBundle; the chart sets none');
    const cert = await cluster.json<{ spec: { secretName: string; dnsNames: string[]; issuerRef: { name: string } } }>(['-n', ns, 'get', 'certificate', `${RELEASE}-tls`]);
    assert.equal(cert.spec.secretName, `${RELEASE}-tls`);
    assert.ok(cert.spec.dnsNames.includes(`${RELEASE}.${ns}.svc`));
    assert.equal(cert.spec.issuerRef.name, `${RELEASE}-ca`);
    const secrets = await cluster.kubectl(['-n', ns, 'get', 'secret', `${RELEASE}-tls`]);
    assert.notEqual(secrets.code, 0, 'no chart-made TLS Secret: cert-manager writes it');
    const uninstall = await cluster.helmRun(['uninstall', RELEASE, '-n', ns, '--wait']);
    assert.equal(uninstall.code, 0, uninstall.stderr);
    assert.deepEqual(await cluster.webhookConfigurations(), []);
  });

  scenario('7. make deploy whose pods never become Ready (no kubelet) is undone: no webhook left, pods admitted', async () => {
    const r = await run('make', ['--no-print-directory', '-C', ROOT, 'deploy'], { env: cluster.env(deployEnv({ ROLLOUT_TIMEOUT: '5s' })), timeoutMs: 5 * MINUTE });
    assert.notEqual(r.code, 0, 'make deploy must fail when the pods do not become Ready');
    assert.match(r.stderr, /has been uninstalled due to rollback-on-failure/);
    assert.deepEqual(await cluster.webhookConfigurations(), []);
    const ok = await cluster.tryPod('default');
    assert.equal(ok.code, 0, `pod creation after the failed install: ${ok.stderr}`);
    await cluster.script('undeploy.sh');
  });
});

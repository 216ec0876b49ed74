/**
 * End-to-end with Anchore Enterprise's v2 API: `make demo SCANNER_API=v2` (a real kube-apiserver,
 * the scanner simulator serving v2 only, scangate given the bare simulator URL with the default
 * ANCHORE_API_VERSION=auto) must pass, and then:
 *   - scangate detected v2, and the simulator saw no v1 call at all;
 *   - the struts sample was denied with the scanner's reasons, nginx admitted (make test, in the demo);
 *   - a digest-pinned pod is judged through a v2 digest source filed under the synthetic tag.
 * Everything runs under a state directory of its own and is torn down afterwards (and by the
 * control plane's watchdog should this process die). Skips like cluster.test.ts when no control plane
 * can be built here, unless CI=true.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { logTo, MINUTE, missingCommands, ROOT, run, scriptCheck, skipReason as suiteSkipReason, tailFile } from './harness.js';

const DIGEST = `sha256:${'7f'.repeat(32)}`;

const log = logTo('e2e v2');

function skipReason(): string | undefined {
  const problems = missingCommands(['kubectl', 'openssl', 'curl', 'make']);
  const check = scriptCheck('build-control-plane.sh', 'the control plane cannot be built');
  if (check !== undefined) problems.push(check);
  return suiteSkipReason(log, 'e2e needs a local control plane', problems);
}

/** The caller's scangate/script settings are never inherited (as in cluster.test.ts). */
const CALLER_SETTINGS = /^(ANCHORE_.*|SAMPLES_.*|WEBHOOK_.*|SCANNER_API|SIM_.*|SCANGATE_RUN_DIR|SCANGATE_WATCH_PID|CERT_DIR|KUBECONFIG|NAMESPACE|POD_NAMESPACE|EXEMPT_NAMESPACES|REJECT_IF_TIMEOUT|MODE|HOST|PORT|TLS_.*|LOG_LEVEL)$/;

const reason = skipReason();

describe('e2e: make demo SCANNER_API=v2 (Anchore Enterprise 5 API, detected by scangate)', { skip: reason ?? false }, () => {
  const runDir = mkdtempSync(join(tmpdir(), 'scangate-e2e-v2-'));
  const env: NodeJS.ProcessEnv = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !CALLER_SETTINGS.test(k))),
    SCANGATE_RUN_DIR: runDir,
    SCANGATE_WATCH_PID: String(process.pid),
    KUBECONFIG: join(runDir, 'cluster', 'kubeconfig'),
  };
  let failed = false;

  after(
    async () => {
      const down = await run('bash', [join(ROOT, 'scripts/cluster-down.sh'), '--keep-logs'], { env, timeoutMs: 2 * MINUTE });
      if (down.code !== 0) log(`cluster-down.sh exited ${String(down.code)}: ${down.stderr}`);
      if (failed) log(`failures: logs kept in ${runDir}`);
      else rmSync(runDir, { recursive: true, force: true });
    },
    { timeout: 3 * MINUTE },
  );

  it('the demo passes against a v2-only scanner; no v1 call; a digest-pinned pod goes through a v2 digest source', { timeout: 40 * MINUTE }, async () => {
    const localDir = join(runDir, 'local');
    try {
      const demo = await run('make', ['--no-print-directory', '-C', ROOT, 'demo', 'SCANNER_API=v2'], { env, timeoutMs: 35 * MINUTE });
      log(`make demo SCANNER_API=v2 exited ${String(demo.code)} in ${(demo.durationMs / 1000).toFixed(1)} s`);
      assert.equal(demo.code, 0, `make demo SCANNER_API=v2:\n${demo.stdout}\n${demo.stderr.slice(-4000)}`);
      assert.match(demo.stdout, /PASS scangate speaks Anchore API v2 to the simulator \(--api v2\)/);
      // The struts Deployment is refused at kubectl apply (its pod template judged), or, should the
      // scan outlast the workload entry's timeout, its pods are (FailedCreate).
      assert.match(demo.stdout, /PASS apache-struts2: (refused at kubectl apply|admitted before its scan finished)/);
      assert.match(demo.stdout, /denied the request: Image failed policy check: kaizheh\/apache-struts2-cve-2017-5638:2\.3\.12 \((deployment "apache-struts2" )?container "apache-struts2-cve-2017-5638"\): vulnerabilities\/package: CRITICAL CVE-2017-5638 in struts2-core-2\.3\.12\.jar/);

      const listening = readFileSync(join(localDir, 'scanner-sim.log'), 'utf8')
        .split('\n')
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return undefined;
          }
        })
        .find((l) => l?.['msg'] === 'scanner simulator listening');
      assert.equal(listening?.['api'], 'v2');
      const simUrl = String(listening?.['url']);
      assert.match(simUrl, /^http:\/\/127\.0\.0\.1:\d+\/v2$/);
      const origin = new URL(simUrl).origin;

      const pinned = await run('kubectl', ['run', 'pinned-nginx', `--image=nginx@${DIGEST}`], { env, timeoutMs: MINUTE });
      assert.equal(pinned.code, 0, `a digest-pinned clean image is admitted: ${pinned.stderr}`);

      const stats = (await (await fetch(`${origin}/_sim/stats`)).json()) as {
        byApi: { v1: number; v2: number };
        encodedDigest: number;
        byTag: Record<string, { addImage: number; check: number }>;
      };
      assert.equal(stats.byApi.v1, 0, 'no v1 call reached the v2-only scanner');
      assert.ok(stats.byApi.v2 >= 4, JSON.stringify(stats.byApi));
      assert.equal(stats.encodedDigest, 0);
      const synthetic = stats.byTag[`docker.io/library/nginx:sha256-${'7f'.repeat(6)}`];
      assert.ok(synthetic !== undefined && synthetic.addImage === 1 && synthetic.check === 1, JSON.stringify(stats.byTag));

      const scangateLog = readFileSync(join(localDir, 'scangate.log'), 'utf8');
      assert.match(scangateLog, /"msg":"scanner API detected"/);
      assert.match(scangateLog, /"apiVersion":"v2"/);
    } catch (err) {
      failed = true;
      log(`FAILED: ${String(err)}`);
      log(`--- scangate log\n${tailFile(join(localDir, 'scangate.log'), 30)}`);
      log(`--- scanner simulator log\n${tailFile(join(localDir, 'scanner-sim.log'), 10)}`);
      throw err;
    }
  });
});

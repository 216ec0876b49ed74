/**
 * A burst of pod creations straight at the node's kube-apiserver, run by the in-cluster suite INSIDE the
 * node's network namespace (the API server listens on that namespace's 127.0.0.1). Server-side dry runs
 * (`?dryRun=All`): the API server runs admission, scangate's webhook included, exactly as for a real
 * creation, without filling etcd with hundreds of pods. Bounded in count and time; prints one JSON line.
 *
 *   node in-cluster-burst.js PKI_DIR PORT NAMESPACE IMAGE DURATION_MS CONCURRENCY MAX_REQUESTS
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';

interface Outcome {
  readonly at: number;
  readonly status: number;
  readonly message: string;
}

const [pki = '', port = '6443', namespace = 'default', image = 'nginx:1.25.3', durationArg = '10000', concurrencyArg = '8', maxArg = '5000'] =
  process.argv.slice(2);
const durationMs = Number(durationArg);
const concurrency = Number(concurrencyArg);
const maxRequests = Number(maxArg);
const agent = new Agent({
  keepAlive: true,
  maxSockets: concurrency,
  ca: readFileSync(join(pki, 'ca.crt')),
  cert: readFileSync(join(pki, 'admin.crt')),
  key: readFileSync(join(pki, 'admin.key')),
});

let seq = 0;
function createOnce(): Promise<Outcome> {
  seq += 1;
  const body = JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `burst-${String(process.pid)}-${String(seq)}`, namespace },
    spec: { schedulerName: 'scangate-test-unscheduled', containers: [{ name: 'app', image }] },
  });
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port: Number(port), method: 'POST', path: `/api/v1/namespaces/${namespace}/pods?dryRun=All`, agent, timeout: 40_000,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d.length < 4096 ? d : ''));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          let message = '';
          if (status !== 201) {
            try {
              const m = (JSON.parse(text) as { message?: unknown }).message;
              message = typeof m === 'string' ? m : text.slice(0, 500);
            } catch {
              message = text.slice(0, 500);
            }
          }
          resolve({ at: Date.now(), status, message });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', (err) => resolve({ at: Date.now(), status: 0, message: err.message }));
    req.end(body);
  });
}

const startedAt = Date.now();
const outcomes: Outcome[] = [];
async function worker(): Promise<void> {
  while (Date.now() - startedAt < durationMs && outcomes.length < maxRequests) outcomes.push(await createOnce());
}
await Promise.all(Array.from({ length: concurrency }, () => worker()));
agent.destroy();
// A dry run starts no scan (README, "Kubernetes Events" / dry runs): a replica whose cache has no verdict
// for IMAGE yet (the replacement of the evicted one) answers "not started yet" at once. That is scangate
// answering, as designed, not an admission failure; anything else (a webhook call that failed, a
// timeout, another denial) is.
const DRY_RUN_UNSCANNED = /denied the request: Image scan not started yet: .*a dry run starts no scan; a real request will\)$/;
const failures = outcomes.filter((o) => o.status !== 201 && !(o.status === 403 && DRY_RUN_UNSCANNED.test(o.message)));
process.stdout.write(`${JSON.stringify({ startedAt, endedAt: Date.now(), total: outcomes.length, times: outcomes.map((o) => o.at), failures })}\n`);

/**
 * A minimal client of the local kube-apiserver for the adversarial suite: the kubeconfig's admin
 * credentials (system:masters), optionally impersonating a user (`Impersonate-User`, as
 * `kubectl --as=` does). Used where kubectl cannot do what a hostile tenant does, or would distort a
 * measurement: request bodies written exactly as given (JSON.stringify does not escape `<`, so a
 * 600 kB value stays 600 kB on the way in and becomes 3.6 MB in the API server's AdmissionReview),
 * many requests at once, and per-request latency without a kubectl process start in it. Only
 * 127.0.0.1.
 */
import { Agent, request as httpsRequest } from 'node:https';
import { run } from './harness.js';

export interface ApiAnswer {
  readonly status: number;
  readonly text: string;
  readonly durationMs: number;
  /** The `Warning` headers (admission warnings). */
  readonly warnings: readonly string[];
}

export interface ApiCall {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  readonly path: string;
  readonly body?: unknown;
  /** Impersonated user (`kubectl --as=`); absent: the cluster admin itself. */
  readonly as?: string;
  /** Content-Type of a PATCH (merge by default). */
  readonly patchType?: 'merge' | 'json' | 'strategic';
  readonly timeoutMs?: number;
}

interface KubeconfigView {
  readonly clusters: ReadonlyArray<{ readonly cluster: { readonly server: string; readonly 'certificate-authority-data': string } }>;
  readonly users: ReadonlyArray<{ readonly user: { readonly 'client-certificate-data': string; readonly 'client-key-data': string } }>;
}

const PATCH_TYPES = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  strategic: 'application/strategic-merge-patch+json',
} as const;

export class ApiClient {
  private constructor(
    private readonly server: URL,
    private readonly agent: Agent,
  ) {}

  /** Reads the admin credentials of `kubeconfig` (kubectl config view --raw). */
  static async fromKubeconfig(kubeconfig: string, env: NodeJS.ProcessEnv): Promise<ApiClient> {
    const r = await run('kubectl', ['--kubeconfig', kubeconfig, 'config', 'view', '--raw', '-o', 'json'], { env, timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`kubectl config view: ${r.stderr}`);
    const view = JSON.parse(r.stdout) as KubeconfigView;
    const cluster = view.clusters[0]?.cluster;
    const user = view.users[0]?.user;
    if (cluster === undefined || user === undefined) throw new Error('kubeconfig without a cluster or user');
    const server = new URL(cluster.server);
    if (server.hostname !== '127.0.0.1') throw new Error(`the suite talks to 127.0.0.1 only, not ${server.hostname}`);
    const b64 = (s: string): Buffer => Buffer.from(s, 'base64');
    const agent = new Agent({
      keepAlive: true,
      maxSockets: 64,
      ca: b64(cluster['certificate-authority-data']),
      cert: b64(user['client-certificate-data']),
      key: b64(user['client-key-data']),
    });
    return new ApiClient(server, agent);
  }

  call(c: ApiCall): Promise<ApiAnswer> {
    const body = c.body === undefined ? undefined : typeof c.body === 'string' ? c.body : JSON.stringify(c.body);
    const headers: Record<string, string | number> = { accept: 'application/json' };
    if (body !== undefined) {
      headers['content-type'] = c.method === 'PATCH' ? PATCH_TYPES[c.patchType ?? 'merge'] : 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    if (c.as !== undefined) headers['impersonate-user'] = c.as;
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        { host: this.server.hostname, port: this.server.port, method: c.method, path: c.path, headers, agent: this.agent, timeout: c.timeoutMs ?? 90_000 },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d));
          res.on('end', () => {
            const w = res.headers['warning'];
            const warnings = w === undefined ? [] : Array.isArray(w) ? w : [w];
            resolve({ status: res.statusCode ?? 0, text, durationMs: performance.now() - started, warnings });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${c.method} ${c.path}: no answer within ${String(c.timeoutMs ?? 90_000)} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  async json<T>(path: string): Promise<T> {
    const r = await this.call({ method: 'GET', path });
    if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${String(r.status)} ${r.text.slice(0, 300)}`);
    return JSON.parse(r.text) as T;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The message of a Kubernetes Status answer (or the start of the text). */
export function statusMessage(a: ApiAnswer): string {
  try {
    const s = JSON.parse(a.text) as { message?: unknown };
    if (typeof s.message === 'string') return s.message;
  } catch {
    // not JSON
  }
  return a.text.slice(0, 500);
}

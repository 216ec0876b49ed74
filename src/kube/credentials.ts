/**
 * Which Kubernetes credentials scangate would use, decided without loading the client (importing
 * @kubernetes/client-node takes about a second: only done when there is something to use it with).
 */
const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * `KUBECONFIG` when set (as kubectl); else the pod's service account when running in a cluster; else
 * none: no ~/.kube/config and no localhost:8080, so an operator's own cluster is never written to by
 * surprise.
 */
export function kubeCredentialSource(
  env: Readonly<Record<string, string | undefined>>,
  fileExists: (path: string) => boolean,
): 'kubeconfig' | 'in-cluster' | undefined {
  const kubeconfig = env['KUBECONFIG'];
  if (kubeconfig !== undefined && kubeconfig.trim() !== '') return 'kubeconfig';
  const host = env['KUBERNETES_SERVICE_HOST'];
  if (host !== undefined && host !== '' && fileExists(SERVICE_ACCOUNT_TOKEN)) return 'in-cluster';
  return undefined;
}

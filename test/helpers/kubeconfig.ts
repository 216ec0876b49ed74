import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTlsFiles } from './harness.js';

/**
 * A kubeconfig for a fake Kubernetes API at `server` (127.0.0.1, serving the test CA's certificate):
 * a bearer token, the test CA as certificate-authority. Returns its path.
 */
export function writeKubeconfig(server: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'scangate-kube-')), 'kubeconfig');
  writeFileSync(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: fake',
      '  cluster:',
      `    server: ${server}`,
      `    certificate-authority: ${join(makeTlsFiles().dir, 'ca.crt')}`,
      'users:',
      '- name: scangate',
      '  user:',
      '    token: fake-token-for-tests',
      'contexts:',
      '- name: fake',
      '  context: {cluster: fake, user: scangate}',
      'current-context: fake',
      '',
    ].join('\n'),
  );
  return path;
}

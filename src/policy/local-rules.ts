import { parseImageReference, type ImageReference } from '../reference/parse-reference.js';
import type { LocalFinding, LocalRules } from './types.js';

/**
 * The rules scangate applies before asking any scanner. Pure.
 *
 * Digest rule: a reference pinned by digest (`name@sha256:...`, also `name:latest@sha256:...`) is NOT
 * a latest-tag violation: the runtime pulls the digest, so what runs is fixed whatever the tag says.
 */
export interface LocalResult {
  readonly reference?: ImageReference;
  readonly finding?: LocalFinding;
}

export function checkLocalRules(image: string, rules: LocalRules): LocalResult {
  const parsed = parseImageReference(image);
  if (!parsed.valid) return { finding: { kind: 'invalid-reference', error: parsed.error } };
  const reference = parsed.reference;
  if (rules.registryAllowlist.length > 0 && !rules.registryAllowlist.includes(reference.domain.toLowerCase())) {
    return { reference, finding: { kind: 'registry-not-allowed', registry: reference.domain } };
  }
  if (rules.denyLatestTag && reference.digest === undefined && (reference.tag ?? 'latest') === 'latest') {
    return { reference, finding: { kind: 'latest-tag' } };
  }
  return { reference };
}

/**
 * Normalises a registry allow-list entry the way references are normalised, so that
 * `index.docker.io`, `Docker.io` and `docker.io` all mean Docker Hub.
 */
export function normaliseRegistry(entry: string): string {
  const host = entry.trim().toLowerCase().replace(/^https?:\/\//, '').replace(/\/+$/, '');
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}

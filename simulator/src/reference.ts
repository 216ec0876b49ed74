/**
 * The simulator's own, deliberately light image-reference parsing. It does not reuse
 * src/reference/: the simulator stands in for a foreign system, and sharing the client's parser
 * would let a parsing bug on one side hide the same bug on the other.
 *
 * It normalises the way Anchore does before storing a tag: Docker Hub names get `docker.io/` and
 * `library/`, `index.docker.io` becomes `docker.io`, and a missing tag means `latest`.
 */

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const REGISTRY = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
/** Anchore only keys images by sha256 manifest digests. */
export const DIGEST = /^sha256:[a-f0-9]{64}$/;
const MAX_REFERENCE_LENGTH = 1024;

export interface SimImageRef {
  /** `docker.io`, `quay.io`, `localhost:5000`. */
  readonly registry: string;
  /** Path inside the registry: `library/nginx`. */
  readonly repo: string;
  /** `registry/repo`. */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

export type RefParse = { readonly ok: true; readonly ref: SimImageRef } | { readonly ok: false; readonly error: string };

function fail(error: string): RefParse {
  return { ok: false, error };
}

/** Parses `[registry/]repo[:tag][@sha256:...]`. */
export function parseSimImageRef(input: string): RefParse {
  if (input.length === 0) return fail('empty image reference');
  if (input.length > MAX_REFERENCE_LENGTH) return fail('image reference is too long');
  if (/\s/.test(input)) return fail(`image reference ${JSON.stringify(input)} contains whitespace`);

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return fail(`invalid digest ${JSON.stringify(digest)} (expected sha256:<64 hex>)`);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) return fail(`invalid tag ${JSON.stringify(tag)}`);
  }

  const parts = rest.split('/');
  let registry = 'docker.io';
  const first = parts[0] ?? '';
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    parts.shift();
    if (!REGISTRY.test(registry)) return fail(`invalid registry ${JSON.stringify(registry)}`);
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = 'docker.io';
  if (registry === 'docker.io' && parts.length === 1) parts.unshift('library');
  for (const part of parts) {
    if (!PATH_COMPONENT.test(part)) return fail(`invalid repository path component ${JSON.stringify(part)}`);
  }
  const repo = parts.join('/');
  return {
    ok: true,
    ref: {
      registry,
      repo,
      repository: `${registry}/${repo}`,
      ...(tag !== undefined ? { tag } : {}),
      ...(digest !== undefined ? { digest } : {}),
    },
  };
}

/** `registry/repo:tag`, with `latest` when the reference has no tag. */
export function fulltagOf(ref: SimImageRef): string {
  return `${ref.repository}:${ref.tag ?? 'latest'}`;
}

/** Normalises a tag reference for lookups; returns the input unchanged when it does not parse. */
export function normalizeFulltag(input: string): string {
  const parsed = parseSimImageRef(input);
  return parsed.ok ? fulltagOf(parsed.ref) : input;
}

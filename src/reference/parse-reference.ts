/**
 * Image reference parsing, exactly as container runtimes parse a Pod's `image:` field: the grammar of
 * github.com/distribution/reference (regexp.go) plus ParseNormalizedNamed's Docker Hub normalisation
 * (normalize.go). Checked against that library's own test tables in
 * test/fixtures/conformance/image-references.json.
 */

const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
const NAME_TOTAL_LENGTH_MAX = 255;

// Grammar pieces, spelled as in distribution/reference regexp.go.
const alphanumeric = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const domainNameComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const ipv6address = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`;
const host = `(?:${domainName}|${ipv6address})`;
const domainAndPort = `${host}(?::[0-9]+)?`;
const tag = '[\\w][\\w.-]{0,127}';
const digestPat = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}';
const remoteName = `${pathComponent}(?:/${pathComponent})*`;
const namePat = `(?:${domainAndPort}/)?${remoteName}`;

const referenceRegexp = new RegExp(`^(${namePat})(?::(${tag}))?(?:@(${digestPat}))?$`);
const anchoredNameRegexp = new RegExp(`^(?:(${domainAndPort})/)?(${remoteName})$`);
const anchoredIdentifierRegexp = /^[a-f0-9]{64}$/;
// opencontainers/go-digest: algorithm grammar, and the algorithms it has registered.
const digestAlgorithmRegexp = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$/;
const digestEncodings: Readonly<Record<string, RegExp>> = {
  sha256: /^[a-f0-9]{64}$/,
  sha384: /^[a-f0-9]{96}$/,
  sha512: /^[a-f0-9]{128}$/,
};

/** A successfully parsed, normalised reference. */
export interface ImageReference {
  /** The text as written in the Pod spec. */
  readonly input: string;
  /** Registry host (with port), normalised: `docker.io` for Docker Hub. */
  readonly domain: string;
  /** Repository path inside the registry, e.g. `library/nginx`. */
  readonly path: string;
  readonly tag?: string;
  readonly digest?: string;
  /** `domain/path`. */
  readonly name: string;
  /** Fully qualified: `name:tag`, `name@digest`, or `name:tag@digest`; `name:latest` when neither is given. */
  readonly canonical: string;
  /** Docker's short form (`nginx`, `bitnami/nginx:1`). */
  readonly familiar: string;
  /** True when neither tag nor digest was written, so the runtime pulls `latest`. */
  readonly impliedLatest: boolean;
}

export type ParseResult =
  | { readonly valid: true; readonly reference: ImageReference }
  | { readonly valid: false; readonly input: string; readonly error: string };

function invalid(input: string, error: string): ParseResult {
  return { valid: false, input, error };
}

function splitDockerDomain(name: string): { domain: string; remainder: string } {
  const i = name.indexOf('/');
  let domain: string;
  let remainder: string;
  const first = i === -1 ? '' : name.slice(0, i);
  if (i === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    remainder = name;
  } else {
    domain = first;
    remainder = name.slice(i + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return { domain, remainder };
}

function validateDigest(digest: string): string | undefined {
  const colon = digest.indexOf(':');
  const algorithm = digest.slice(0, colon);
  const encoded = digest.slice(colon + 1);
  if (!digestAlgorithmRegexp.test(algorithm)) return 'invalid digest format';
  const encoding = digestEncodings[algorithm];
  if (encoding === undefined) return `unsupported digest algorithm "${algorithm}"`;
  if (!encoding.test(encoded)) return `invalid ${algorithm} digest: expected ${algorithm === 'sha256' ? 64 : algorithm === 'sha384' ? 96 : 128} lower-case hex characters`;
  return undefined;
}

function familiarName(domain: string, path: string): string {
  if (domain === '') return path;
  if (domain !== DEFAULT_DOMAIN) return `${domain}/${path}`;
  return path.startsWith(OFFICIAL_REPO_PREFIX) && !path.slice(OFFICIAL_REPO_PREFIX.length).includes('/')
    ? path.slice(OFFICIAL_REPO_PREFIX.length)
    : path;
}

/**
 * Parses an image reference as the container runtime does (distribution/reference
 * ParseNormalizedNamed). Never throws: an invalid reference is a result with a human-readable error.
 */
export function parseImageReference(input: string): ParseResult {
  // Callers may hand us anything from a JSON body.
  if (typeof (input as unknown) !== 'string') return invalid('', 'image reference must be a string');
  if (input.length === 0) return invalid(input, 'image reference is empty');
  if (anchoredIdentifierRegexp.test(input)) {
    return invalid(input, `invalid repository name (${input}), cannot specify 64-byte hexadecimal strings`);
  }
  const { domain: splitDomain, remainder } = splitDockerDomain(input);
  const tagSep = remainder.indexOf(':');
  const remote = tagSep > -1 ? remainder.slice(0, tagSep) : remainder;
  if (remote.toLowerCase() !== remote) {
    return invalid(input, `repository name (${remote}) must be lowercase`);
  }
  const full = `${splitDomain}/${remainder}`;
  const m = referenceRegexp.exec(full);
  if (m === null) {
    if (referenceRegexp.test(full.toLowerCase())) return invalid(input, 'repository name must be lowercase');
    return invalid(input, 'invalid reference format');
  }
  const nameMatch = m[1] ?? '';
  if (nameMatch.length > NAME_TOTAL_LENGTH_MAX) {
    return invalid(input, `repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  const parts = anchoredNameRegexp.exec(nameMatch);
  const domain = parts?.[1] ?? '';
  const path = parts?.[2] ?? '';
  const tagValue = m[2];
  const digestValue = m[3];
  if (digestValue !== undefined) {
    const problem = validateDigest(digestValue);
    if (problem !== undefined) return invalid(input, problem);
  }
  // The grammar lets a first component that is not a valid host ("a_b.c/d") fall back into the
  // path, leaving no domain at all, exactly as distribution/reference does: Name() is then the path.
  const name = domain === '' ? path : `${domain}/${path}`;
  const impliedLatest = tagValue === undefined && digestValue === undefined;
  const suffix =
    (tagValue !== undefined ? `:${tagValue}` : '') + (digestValue !== undefined ? `@${digestValue}` : '');
  const canonical = impliedLatest ? `${name}:latest` : `${name}${suffix}`;
  const reference: ImageReference = {
    input,
    domain,
    path,
    ...(tagValue !== undefined ? { tag: tagValue } : {}),
    ...(digestValue !== undefined ? { digest: digestValue } : {}),
    name,
    canonical,
    familiar: `${familiarName(domain, path)}${suffix}`,
    impliedLatest,
  };
  return { valid: true, reference };
}

/**
 * The reference a verdict is keyed and scanned by. A digest fixes what runs whatever the tag says, so
 * `name:tag@digest` is `name@digest`: a tenant cannot make another cache entry or another scan by
 * writing another tag next to the same digest, and never gets its tag pushed to the scanner.
 */
export function scanReference(reference: ImageReference): ImageReference {
  if (reference.digest === undefined || reference.tag === undefined) return reference;
  const familiarBase = reference.familiar.slice(0, reference.familiar.length - `:${reference.tag}@${reference.digest}`.length);
  return {
    input: reference.input,
    domain: reference.domain,
    path: reference.path,
    digest: reference.digest,
    name: reference.name,
    canonical: `${reference.name}@${reference.digest}`,
    familiar: `${familiarBase}@${reference.digest}`,
    impliedLatest: false,
  };
}

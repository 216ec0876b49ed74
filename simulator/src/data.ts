/**
 * The simulator's data file (simulator/scanner-data.json): which images have which vulnerabilities,
 * which digests tags resolve to, and which policy bundles exist. Validated with zod; every problem
 * is reported at once with its JSON path.
 *
 * ```jsonc
 * {
 *   "description": "free text",                       // optional
 *   "policies": [                                      // optional; default: one active bundle,
 *     { "id": "2c53a13c-...", "name": "Default bundle",//   stop on Critical/High, warn on Medium
 *       "active": true,                                // the active bundle (when no entry sets
 *       "stopSeverities": ["Critical", "High"],        //   `active`, the first one is active;
 *       "warnSeverities": ["Medium"] }                 //   all `false` = no active policy)
 *   ],
 *   "defaults": { "vulnerabilities": [] },             // images not listed below (default: none)
 *   "repositories": {
 *     "docker.io/library/python": {                    // fully qualified, no tag
 *       "vulnerabilities": [ ... ],                    // any tag not listed under "tags"
 *       "tags": {
 *         "3.6": { "digest": "sha256:<64 hex>",        // optional fixed digest (else derived)
 *                  "imageId": "<64 hex>",              // optional (else derived)
 *                  "vulnerabilities": [ ... ] }        // replaces the repository's list
 *       }
 *     }
 *   }
 * }
 * ```
 * A vulnerability: `{ "vuln", "severity": Unknown|Negligible|Low|Medium|High|Critical, "package"
 * (name-version, as Anchore prints it), "packageName"?, "packageType"? (default dpkg; dpkg, rpm
 * and apk are os packages, anything else is non-os), "packagePath"? (shown for non-os packages),
 * "fix"?, "url"? (default: the NVD page for CVE ids) }`.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { SimulatorConfigError } from './errors.js';
import { DIGEST, parseSimImageRef } from './reference.js';

export const SEVERITIES = ['Unknown', 'Negligible', 'Low', 'Medium', 'High', 'Critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** The bundle id of Anchore Engine's shipped default policy bundle. */
export const DEFAULT_POLICY_ID = '2c53a13c-1765-11e8-82ef-23527761d060';

const nonEmpty = z.string().min(1, 'must not be empty');
const hex64 = z.string().regex(/^[a-f0-9]{64}$/, 'must be 64 lowercase hex characters');
const severitySchema = z.enum(SEVERITIES, {
  error: () => `must be one of ${SEVERITIES.join(', ')}`,
});

const vulnerabilitySchema = z.strictObject({
  vuln: nonEmpty,
  severity: severitySchema,
  package: nonEmpty,
  packageName: nonEmpty.optional(),
  packageType: nonEmpty.default('dpkg'),
  packagePath: nonEmpty.optional(),
  fix: nonEmpty.optional(),
  url: nonEmpty.optional(),
});

const tagSchema = z.strictObject({
  digest: z.string().regex(DIGEST, 'must be sha256:<64 lowercase hex>').optional(),
  imageId: hex64.optional(),
  vulnerabilities: z.array(vulnerabilitySchema).optional(),
});

const tagKeySchema = z.string().regex(/^[\w][\w.-]{0,127}$/, 'not a valid tag');

const repositoryKeySchema = z.string().superRefine((key, ctx) => {
  const parsed = parseSimImageRef(key);
  if (!parsed.ok) {
    ctx.addIssue({ code: 'custom', message: `not a repository name: ${parsed.error}` });
  } else if (parsed.ref.tag !== undefined || parsed.ref.digest !== undefined || parsed.ref.repository !== key) {
    ctx.addIssue({
      code: 'custom',
      message: `repository keys must be fully qualified and carry no tag or digest: write ${JSON.stringify(parsed.ref.repository)}`,
    });
  }
});

const repositorySchema = z.strictObject({
  description: z.string().optional(),
  vulnerabilities: z.array(vulnerabilitySchema).default([]),
  tags: z.record(tagKeySchema, tagSchema).default({}),
});

const policySchema = z.strictObject({
  id: nonEmpty,
  name: nonEmpty,
  active: z.boolean().optional(),
  stopSeverities: z.array(severitySchema).default(['Critical', 'High']),
  warnSeverities: z.array(severitySchema).default(['Medium']),
});

const dataSchema = z
  .strictObject({
    $schema: z.string().optional(),
    description: z.string().optional(),
    policies: z
      .array(policySchema)
      .default([{ id: DEFAULT_POLICY_ID, name: 'Default bundle', stopSeverities: ['Critical', 'High'], warnSeverities: ['Medium'] }]),
    defaults: z.strictObject({ vulnerabilities: z.array(vulnerabilitySchema).default([]) }).default({ vulnerabilities: [] }),
    repositories: z.record(repositoryKeySchema, repositorySchema).default({}),
  })
  // Cross-field checks; zod runs them once everything above is valid.
  .superRefine((data, ctx) => {
    for (const [key, repo] of Object.entries(data.repositories)) {
      const seen = new Map<string, string>();
      for (const [tag, entry] of Object.entries(repo.tags)) {
        if (entry.digest === undefined) continue;
        const vulns = JSON.stringify(entry.vulnerabilities ?? repo.vulnerabilities);
        const other = seen.get(entry.digest);
        if (other !== undefined && other !== vulns) {
          ctx.addIssue({
            code: 'custom',
            path: ['repositories', key, 'tags', tag, 'digest'],
            message: 'the same digest is listed for another tag with different vulnerabilities',
          });
        }
        seen.set(entry.digest, vulns);
      }
    }
    const ids = new Set<string>();
    data.policies.forEach((p, i) => {
      if (ids.has(p.id)) ctx.addIssue({ code: 'custom', path: ['policies', i, 'id'], message: `duplicate policy id ${p.id}` });
      ids.add(p.id);
      const both = p.stopSeverities.filter((s) => p.warnSeverities.includes(s));
      if (both.length > 0) {
        ctx.addIssue({ code: 'custom', path: ['policies', i], message: `severities both stop and warn: ${both.join(', ')}` });
      }
    });
    if (data.policies.filter((p) => p.active === true).length > 1) {
      ctx.addIssue({ code: 'custom', path: ['policies'], message: 'at most one policy may be active' });
    }
  });

/** The data file format as written (fields with defaults are optional). */
export type SimulatorData = z.input<typeof dataSchema>;
export type SimVulnerability = z.output<typeof vulnerabilitySchema>;
export type SimPolicy = z.output<typeof policySchema>;
type ParsedData = z.output<typeof dataSchema>;

/** Validated data with defaults applied and the active policy resolved. */
export interface ResolvedSimulatorData {
  readonly policies: readonly SimPolicy[];
  readonly activePolicyId: string | undefined;
  readonly defaultVulnerabilities: readonly SimVulnerability[];
  readonly repositories: ParsedData['repositories'];
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  let last = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${String(key)}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$]*$/.test(key) && !/^(repositories|tags)$/.test(last)) {
      out += out === '' ? key : `.${key}`;
    } else out += `[${JSON.stringify(String(key))}]`;
    last = String(key);
  }
  return out === '' ? '(root)' : out;
}

interface IssueLike {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly issues?: readonly IssueLike[];
}

/** Flattens zod issues; a bad record key carries its own issues inside an `invalid_key` issue. */
function problemsOf(issues: readonly IssueLike[], prefix: readonly PropertyKey[] = []): string[] {
  return issues.flatMap((issue) => {
    const path = [...prefix, ...issue.path];
    if (issue.issues !== undefined && issue.issues.length > 0) return problemsOf(issue.issues, path);
    return [`${formatPath(path)}: ${issue.message}`];
  });
}

/** Validates data (from a file or built in code); throws SimulatorConfigError listing every problem. */
export function resolveSimulatorData(raw: unknown, source = 'scanner simulator data'): ResolvedSimulatorData {
  const result = dataSchema.safeParse(raw);
  if (!result.success) {
    throw new SimulatorConfigError(source, problemsOf(result.error.issues), { cause: result.error });
  }
  const data = result.data;
  const explicit = data.policies.find((p) => p.active === true);
  const implicit = data.policies.every((p) => p.active === undefined) ? data.policies[0] : undefined;
  return {
    policies: data.policies,
    activePolicyId: (explicit ?? implicit)?.id,
    defaultVulnerabilities: data.defaults.vulnerabilities,
    repositories: data.repositories,
  };
}

/** Reads and validates a data file. Throws SimulatorConfigError (unreadable, not JSON, invalid). */
export async function loadSimulatorData(file: string | URL): Promise<SimulatorData> {
  const name = file instanceof URL ? fileURLToPath(file) : file;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SimulatorConfigError(`scanner data file ${name}`, [`cannot read: ${(err as Error).message}`], { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SimulatorConfigError(`scanner data file ${name}`, [`not valid JSON: ${(err as Error).message}`], { cause: err });
  }
  resolveSimulatorData(raw, `scanner data file ${name}`);
  return raw as SimulatorData;
}

/**
 * The package's scanner-data.json, located from the compiled file (simulator/dist/data.js, one level
 * below the package root) so it is found from any working directory.
 */
export const SAMPLE_DATA_URL = new URL('../scanner-data.json', import.meta.url);

let sampleData: Promise<SimulatorData> | undefined;

/** The sample data file, read once per process. */
export function loadSampleSimulatorData(): Promise<SimulatorData> {
  sampleData ??= loadSimulatorData(SAMPLE_DATA_URL).catch((err: unknown) => {
    sampleData = undefined;
    throw err;
  });
  return sampleData;
}

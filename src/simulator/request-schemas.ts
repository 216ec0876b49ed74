/**
 * The declared types of `POST /images` request bodies, as the official documents give them
 * (test/fixtures/reference/anchore-engine-v1-swagger.yaml `ImageAnalysisRequest`, and the v2 subset's):
 * a real server validates the body against its spec before its controller runs, so a field of the
 * wrong type (a `digest` that is an array, a `dockerfile` that is not base64, a `created_at` that is
 * not a date-time, a `null` where the spec does not allow one) is refused even when the rest of the
 * body would do. Unknown fields are allowed, as the documents allow them; required fields are the
 * parsers' to name (wire.ts, wire-v2.ts), so their messages stay the server's. What the fields mean is
 * wire.ts / wire-v2.ts's business; the contract tests (test/contract/) hold both to the documents.
 */
import { z } from 'zod';
import { AnchoreApiError } from './errors.js';

const base64 = z.string().regex(/^[a-zA-Z0-9+/=]+$/, 'must be base64 (^[a-zA-Z0-9+/=]+$)');
const dateTime = z.iso.datetime({ offset: true });
const annotations = z.record(z.string(), z.unknown());
/** `AnalysisArchiveSource` (nullable in both documents). */
const archiveSource = z.looseObject({ digest: z.string().regex(/^sha256:[a-fA-F0-9]{64}$/).optional() }).nullable();
/** `ImageImportManifest`: not analysed by the simulator, only its type is checked here. */
const importSource = z.looseObject({}).nullable();

function source(pullField: 'pullstring' | 'pull_string'): z.ZodType {
  return z.looseObject({
    tag: z.looseObject({ [pullField]: z.string().optional(), dockerfile: base64.optional() }).nullable().optional(),
    digest: z
      .looseObject({
        [pullField]: z.string().optional(),
        tag: z.string().optional(),
        creation_timestamp_override: dateTime.optional(),
        dockerfile: base64.optional(),
      })
      .nullable()
      .optional(),
    archive: archiveSource.optional(),
    import: importSource.optional(),
  });
}

const v1Request = z.looseObject({
  dockerfile: base64.optional(),
  digest: z.string().optional(),
  tag: z.string().optional(),
  created_at: dateTime.optional(),
  image_type: z.string().optional(),
  annotations: annotations.optional(),
  source: source('pullstring').optional(),
});

const v2Request = z.looseObject({
  image_type: z.string().optional(),
  annotations: annotations.optional(),
  source: source('pull_string').optional(),
});

/** Throws the 400 a real server answers when a declared field of the body has the wrong type. */
export function checkImageAnalysisRequestTypes(api: 'v1' | 'v2', body: unknown): void {
  const result = (api === 'v1' ? v1Request : v2Request).safeParse(body);
  if (result.success) return;
  const problems = result.error.issues.map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(body)'}: ${i.message}`);
  const problem = problems.join('; ');
  throw new AnchoreApiError(400, `Could not validate request due to error: ${problem}`, { validation_error: problem });
}

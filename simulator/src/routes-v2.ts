/**
 * Anchore Enterprise's v2 API (under the v2 base, default /v2; Basic auth except version and ping):
 *   GET  {v2}/version                        version       (ServiceVersion, api.version "2")
 *   GET  {v2}/                               ping          ("v2")
 *   POST {v2}/images[?force&auto_subscribe]  addImage      (one AnchoreImage)
 *   GET  {v2}/images[?full_tag=]             listImages    ({"items": [...]})
 *   GET  {v2}/images/{image_digest}          getImage
 *   GET  {v2}/images/{image_digest}/check?tag=[&policy_id]   check   (PolicyEvaluation)
 * v2 refuses query parameters its spec does not declare (400), refuses a digest that does not match
 * the spec's path pattern (400: `sha256%3A...` included), and errors are `ApiErrorResponse`
 * (`{code, error_type, message, detail}`).
 */
import { AnchoreApiError } from './errors.js';
import { normalizeFulltag } from './reference.js';
import { prepareAddImage, queryFlag, sendJson, SIMULATED_VERSION, type ApiVersion, type PathRoute, type RouteDeps } from './routing.js';
import {
  apiErrorJsonV2,
  checkJsonV2,
  checkQueryV2,
  errorJsonV2,
  imageRecordJsonV2,
  parseAddImageBodyV2,
  versionJsonV2,
} from './wire-v2.js';

/** The spec's path pattern of `{image_digest}`. */
const V2_DIGEST_PATTERN = /^sha256:[a-fA-F0-9]{64}$/;

function checkDigest(digest: string): void {
  if (!V2_DIGEST_PATTERN.test(digest)) {
    throw new AnchoreApiError(400, `'${digest}' does not match '^sha256:[a-fA-F0-9]{64}$' - 'image_digest'`, { parameter: 'image_digest' });
  }
}

function v2Routes(deps: RouteDeps): PathRoute[] {
  const { engine } = deps;
  return [
    {
      path: '/',
      otherwise: 'other',
      methods: {
        GET: {
          operation: 'other',
          auth: false,
          prepare: () => (res) => {
            sendJson(res, 200, 'v2');
          },
        },
      },
    },
    {
      path: '/version',
      otherwise: 'version',
      methods: {
        GET: {
          operation: 'version',
          // `x-anchore-authz-action: None`: Anchore's own admission controller calls it without credentials.
          auth: false,
          prepare: ({ query }) => (res) => {
            checkQueryV2('version', query);
            sendJson(res, 200, versionJsonV2(SIMULATED_VERSION));
          },
        },
      },
    },
    {
      path: '/images',
      otherwise: 'other',
      methods: {
        POST: {
          operation: 'addImage',
          auth: true,
          prepare: (req) =>
            prepareAddImage(deps, req, 'auto_subscribe', parseAddImageBodyV2, (res, submitted, force) => {
              checkQueryV2('addImage', req.query);
              sendJson(res, 200, imageRecordJsonV2(engine.submit(submitted(), force), deps.user));
            }),
        },
        GET: {
          operation: 'listImages',
          auth: true,
          prepare: ({ query }) => (res) => {
            checkQueryV2('listImages', query);
            const fullTag = query.get('full_tag') ?? undefined;
            const items = engine.listImages(fullTag === '' ? undefined : fullTag).map((v) => imageRecordJsonV2(v, deps.user));
            sendJson(res, 200, { items });
          },
        },
      },
    },
    {
      path: '/images/:digest',
      otherwise: 'getImage',
      methods: {
        GET: {
          operation: 'getImage',
          auth: true,
          prepare: ({ params, query }) => {
            const digest = params['digest'] ?? '';
            for (const tag of engine.tagsOf(digest)) deps.tagStats(tag).getImage += 1;
            return (res) => {
              checkDigest(digest);
              checkQueryV2('getImage', query);
              sendJson(res, 200, imageRecordJsonV2(engine.getImage(digest.toLowerCase()), deps.user));
            };
          },
        },
      },
    },
    {
      path: '/images/:digest/check',
      otherwise: 'check',
      methods: {
        GET: {
          operation: 'check',
          auth: true,
          prepare: ({ params, query }) => {
            const digest = params['digest'] ?? '';
            const tag = query.get('tag');
            if (tag !== null && tag !== '') deps.tagStats(normalizeFulltag(tag)).check += 1;
            return (res) => {
              checkDigest(digest);
              checkQueryV2('check', query);
              if (tag === null || tag === '') throw new AnchoreApiError(400, "'tag' is a required query parameter", { parameter: 'tag' });
              const policyId = query.get('policy_id');
              const result = engine.check(digest.toLowerCase(), tag, policyId === null || policyId === '' ? undefined : policyId);
              sendJson(res, 200, checkJsonV2(result, queryFlag(query, 'detail', true)));
            };
          },
        },
      },
    },
  ];
}

/** The v2 API served under `deps.basePath`. */
export function createV2Api(deps: RouteDeps): ApiVersion {
  return {
    api: 'v2',
    basePath: deps.basePath,
    routes: v2Routes(deps),
    errorBody: (status, message, detail = {}) => errorJsonV2(status, message, detail),
    apiErrorBody: (err) => apiErrorJsonV2(err),
    malformedText: '{"image_digest": "sha256:<truncated',
    // Anchore answers an object from every v2 operation.
    wrongShape: () => ['simulated wrong shape: an array where an object is expected'],
  };
}

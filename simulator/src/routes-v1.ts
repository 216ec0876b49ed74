/**
 * Anchore Engine's v1 API (under the v1 base, default /v1; HTTP Basic auth on every call except the
 * `GET {base}` ping):
 *   GET  {base}/                             ping          ("v1")
 *   GET  {base}/status                       service status
 *   POST {base}/images                       addImage      (array of AnchoreImage)
 *   GET  {base}/images[?fulltag=]            listImages
 *   GET  {base}/images/{digest}              getImage
 *   GET  {base}/images/{digest}/check?tag=   check         ([{digest: {tag: [evaluation]}}])
 *   GET  {base}/images/{digest}/vuln[/{all|os|non-os}]   vuln
 * Errors are `{message, httpcode, detail}`. The engine's `GET /version` (outside the base) is
 * `versionJsonV1`.
 */
import type { VulnerabilityType } from './engine.js';
import { AnchoreApiError } from './errors.js';
import type { RouteOperation } from './faults.js';
import { normalizeFulltag } from './reference.js';
import { queryFlag, prepareAddImage, sendJson, SIMULATED_VERSION, type ApiVersion, type PathRoute, type RouteDeps } from './routing.js';
import { checkJson, errorJson, imageRecordJson, parseAddImageBody, vulnerabilitiesJson } from './wire.js';

/** Anchore Engine's `GET /version`: an empty `api`, which is how a v1 server tells itself apart. */
export function versionJsonV1(): unknown {
  return { service: { version: SIMULATED_VERSION }, api: {}, db: { schema_version: '0.0.0' } };
}

const STATUS = { available: true, busy: false, up: true, message: 'all good', version: SIMULATED_VERSION, db_version: '0.0.0', detail: {} };

function v1Routes(deps: RouteDeps): PathRoute[] {
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
            sendJson(res, 200, 'v1');
          },
        },
      },
    },
    {
      path: '/status',
      otherwise: 'other',
      methods: {
        GET: {
          operation: 'other',
          auth: true,
          prepare: () => (res) => {
            sendJson(res, 200, STATUS);
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
            prepareAddImage(deps, req, 'autosubscribe', parseAddImageBody, (res, submitted, force) => {
              sendJson(res, 200, [imageRecordJson(engine.submit(submitted(), force), deps.user)]);
            }),
        },
        GET: {
          operation: 'listImages',
          auth: true,
          prepare: ({ query }) => (res) => {
            const fulltag = query.get('fulltag') ?? undefined;
            sendJson(res, 200, engine.listImages(fulltag === '' ? undefined : fulltag).map((v) => imageRecordJson(v, deps.user)));
          },
        },
      },
    },
    {
      // The digest as sent: `sha256%3A...` names no image (see server.ts).
      path: '/images/:digest',
      otherwise: 'getImage',
      methods: {
        GET: {
          operation: 'getImage',
          auth: true,
          prepare: ({ params }) => {
            const digest = params['digest'] ?? '';
            for (const tag of engine.tagsOf(digest)) deps.tagStats(tag).getImage += 1;
            return (res) => {
              sendJson(res, 200, [imageRecordJson(engine.getImage(digest), deps.user)]);
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
              if (tag === null || tag === '') throw new AnchoreApiError(400, "Missing query parameter 'tag'", { parameter: 'tag' });
              const policyId = query.get('policyId');
              const result = engine.check(digest, tag, policyId === null || policyId === '' ? undefined : policyId);
              sendJson(res, 200, checkJson(result, queryFlag(query, 'detail', true)));
            };
          },
        },
      },
    },
    {
      path: '/images/:digest/vuln',
      otherwise: 'vuln',
      methods: {
        GET: {
          operation: 'vuln',
          auth: true,
          prepare: ({ params }) => (res) => {
            engine.getImage(params['digest'] ?? '');
            sendJson(res, 200, ['os', 'non-os', 'all']);
          },
        },
      },
    },
    {
      path: '/images/:digest/vuln/:type',
      otherwise: 'vuln',
      methods: {
        GET: {
          operation: 'vuln',
          auth: true,
          prepare: ({ params }) => (res) => {
            const digest = params['digest'] ?? '';
            const type = params['type'] ?? '';
            if (type !== 'all' && type !== 'os' && type !== 'non-os') {
              throw new AnchoreApiError(404, `content type (${type}) not available`, {});
            }
            const vulnType: VulnerabilityType = type;
            sendJson(res, 200, vulnerabilitiesJson(digest, vulnType, engine.vulnerabilities(digest, vulnType).vulnerabilities));
          },
        },
      },
    },
  ];
}

/** The v1 API served under `deps.basePath`. */
export function createV1Api(deps: RouteDeps): ApiVersion {
  return {
    api: 'v1',
    basePath: deps.basePath,
    routes: v1Routes(deps),
    errorBody: (status, message, detail = {}) => errorJson(status, message, detail),
    apiErrorBody: (err) => err.toBody(),
    malformedText: '{"imageDigest": "sha256:<truncated',
    // Anchore answers an array everywhere but vuln, where it answers an object.
    wrongShape: (operation: RouteOperation) =>
      operation === 'vuln'
        ? ['simulated wrong shape: an array where an object is expected']
        : { simulated: 'wrong shape: an object where an array is expected' },
  };
}

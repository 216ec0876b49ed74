/**
 * The three calls of a scan (add the image, read its record, read the policy check) in each API's
 * words. The scan flow in anchore-client.ts is written once against this interface: which API is
 * spoken is decided here and in api-version.ts, and nowhere above src/scanner/.
 *
 * Digests go into paths as `sha256:<hex>`, unencoded, as anchore-cli and Anchore's own clients send
 * them: `:` is reserved, and a server or proxy need not read `%3A` as `:`. Only a digest that passed
 * IMAGE_DIGEST (pickRecord) is ever put in a path.
 */
import type { ImageReference } from '../reference/parse-reference.js';
import type { ApiVersion, ScannerEndpoint } from './api-version.js';
import { errorMessage, parseCheck, parseImageList, pickRecord, type ImageRecord, type PolicyEvaluation } from './anchore-wire.js';
import { errorMessageV2, parseCheckV2, parseImageV2 } from './anchore-v2-wire.js';

export interface WireRequest {
  readonly method: 'GET' | 'POST';
  /** Absolute URL. */
  readonly url: string;
  readonly params?: Record<string, string>;
  readonly data?: unknown;
}

export interface WireProtocol {
  readonly version: ApiVersion;
  /** `tag` is the tag the scanner files the image under (submissionTag). */
  addImage(reference: ImageReference, tag: string): WireRequest;
  /** The record of our image in the answer to addImage / getImage (matched by digest or tag). */
  parseImage(body: unknown, tag: string, digest: string | undefined): ImageRecord;
  getImage(digest: string): WireRequest;
  check(digest: string, tag: string, policyId: string | undefined): WireRequest;
  parseCheck(body: unknown, digest: string, tag: string): PolicyEvaluation;
  /** The scanner's own text in an error body. */
  errorMessage(body: unknown): string;
}

/** Anchore Engine v1 (also Enterprise <= 4.9 and Sysdig Secure's Anchore API). */
function v1(base: string): WireProtocol {
  return {
    version: 'v1',
    addImage: (reference, tag) => ({
      method: 'POST',
      url: `${base}/images`,
      params: { autosubscribe: 'false' },
      // The legacy body every v1 server takes.
      data: reference.digest !== undefined ? { tag, digest: reference.digest } : { tag },
    }),
    parseImage: (body, tag, digest) => pickRecord(parseImageList(body), tag, digest),
    getImage: (digest) => ({ method: 'GET', url: `${base}/images/${digest}` }),
    check: (digest, tag, policyId) => ({
      method: 'GET',
      url: `${base}/images/${digest}/check`,
      params: { tag, detail: 'true', history: 'false', ...(policyId !== undefined ? { policyId } : {}) },
    }),
    parseCheck,
    errorMessage,
  };
}

/** Anchore Enterprise v2 (4.9+, 5.x). */
function v2(base: string): WireProtocol {
  return {
    version: 'v2',
    addImage: (reference, tag) => ({
      method: 'POST',
      url: `${base}/images`,
      params: { auto_subscribe: 'false' },
      // A digest-pinned reference is pulled by its digest and filed under `tag`, which is never pulled.
      data:
        reference.digest !== undefined
          ? { source: { digest: { pull_string: `${reference.name}@${reference.digest}`, tag } } }
          : { source: { tag: { pull_string: tag } } },
    }),
    parseImage: (body, tag, digest) => pickRecord([parseImageV2(body)], tag, digest),
    getImage: (digest) => ({ method: 'GET', url: `${base}/images/${digest}` }),
    check: (digest, tag, policyId) => ({
      method: 'GET',
      url: `${base}/images/${digest}/check`,
      params: { tag, detail: 'true', history: 'false', ...(policyId !== undefined ? { policy_id: policyId } : {}) },
    }),
    parseCheck: parseCheckV2,
    errorMessage: errorMessageV2,
  };
}

export function createWireProtocol(version: ApiVersion, endpoint: ScannerEndpoint): WireProtocol {
  return version === 'v2' ? v2(endpoint.v2) : v1(endpoint.v1);
}

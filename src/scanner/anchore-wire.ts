/**
 * The Anchore v1 wire format (test/fixtures/reference/ANCHORE-API.md). Only this module and
 * anchore-client.ts know these shapes; everything past them speaks ScanVerdict.
 */
import { ScannerProtocolError } from '../errors.js';
import type { StopReason } from '../policy/types.js';
import { parseImageReference } from '../reference/parse-reference.js';
import { isObject } from '../util/is-object.js';

export type AnalysisStatus = 'not_analyzed' | 'analyzing' | 'analyzed' | 'analysis_failed' | (string & {});

export interface ImageRecord {
  readonly imageDigest: string;
  readonly analysisStatus: AnalysisStatus;
  readonly fulltags: readonly string[];
  /**
   * The manifest-list digest when the analysed image came from a multi-arch tag (`parentDigest`); for
   * a single-platform image Anchore repeats the image digest. Only kept when it is a well-formed digest.
   */
  readonly parentDigest?: string;
}

export interface PolicyEvaluation {
  readonly status: 'pass' | 'fail';
  readonly policyId?: string;
  readonly stopReasons: readonly StopReason[];
  readonly warnCount: number;
  readonly finalActionReason?: string;
}

/**
 * A manifest digest as Anchore keys images (the v2 spec's `{image_digest}` path pattern). Digests
 * from the scanner's answers go into request paths as they are (`:` unencoded, as anchore-cli and
 * Anchore's own clients send it), so nothing else may pass.
 */
export const IMAGE_DIGEST = /^sha256:[a-fA-F0-9]{64}$/;

/** A pin digest must also be one the reference grammar accepts (lower-case hex). */
export const PIN_DIGEST = /^sha256:[a-f0-9]{64}$/;

/** The digest to pin a pod to: the manifest list when the scanner names one, else the analysed manifest. */
export function pinDigestOf(record: ImageRecord): string | undefined {
  return record.parentDigest !== undefined && record.parentDigest !== record.imageDigest ? record.parentDigest : undefined;
}

/** Anchore writes `docker.io/nginx:1`, we write `docker.io/library/nginx:1`: compare normalised. */
export function sameImageTag(a: string, b: string): boolean {
  if (a === b) return true;
  const pa = parseImageReference(a);
  const pb = parseImageReference(b);
  return pa.valid && pb.valid && pa.reference.canonical === pb.reference.canonical;
}

/** Parses an `AnchoreImageList` (POST /images, GET /images/{digest}). */
export function parseImageList(body: unknown): ImageRecord[] {
  if (!Array.isArray(body)) throw new ScannerProtocolError('scanner answered an image list that is not an array');
  return body.map((raw, i) => {
    if (!isObject(raw) || typeof raw['imageDigest'] !== 'string' || typeof raw['analysis_status'] !== 'string') {
      throw new ScannerProtocolError(`scanner image record ${i} lacks imageDigest/analysis_status`);
    }
    const details = Array.isArray(raw['image_detail']) ? raw['image_detail'] : [];
    const fulltags = details.flatMap((d) => (isObject(d) && typeof d['fulltag'] === 'string' ? [d['fulltag']] : []));
    const parent = raw['parentDigest'];
    const parentDigest = typeof parent === 'string' && PIN_DIGEST.test(parent) ? parent : undefined;
    return { imageDigest: raw['imageDigest'], analysisStatus: raw['analysis_status'], fulltags, ...(parentDigest !== undefined ? { parentDigest } : {}) };
  });
}

/**
 * Picks the record of the image we asked for. Never "the first one": a record matches by the
 * digest we pinned (the manifest it analysed, or the manifest list above it: what digest pinning
 * writes for a multi-arch tag, and which Anchore keeps as the record's parent digest), or by one of
 * its tags.
 */
export function pickRecord(records: readonly ImageRecord[], tag: string, digest: string | undefined): ImageRecord {
  const match = records.find((r) =>
    digest !== undefined ? r.imageDigest === digest || r.parentDigest === digest : r.fulltags.some((t) => sameImageTag(t, tag)),
  );
  if (match === undefined) throw new ScannerProtocolError(`scanner returned no image record for ${digest ?? tag}`);
  if (!IMAGE_DIGEST.test(match.imageDigest)) throw new ScannerProtocolError('scanner image record has no sha256 image digest');
  return match;
}

/** Error bodies are `{"message", "httpcode", "detail"}`. */
export function errorMessage(body: unknown): string {
  if (isObject(body) && typeof body['message'] === 'string') return body['message'];
  return typeof body === 'string' ? body : '';
}

type Table = Record<string, unknown>;

function tablesIn(map: unknown): Table[] {
  if (!isObject(map)) return [];
  return Object.values(map).flatMap((v) =>
    isObject(v) && isObject(v['result']) && Array.isArray(v['result']['header']) ? [v['result']] : [],
  );
}

/**
 * The rules table of an evaluation. Anchore Engine nests it as `detail.result.result[image_id].result`
 * (what anchore-cli reads, next to `final_action`); ANCHORE-API.md documents
 * `detail.result[image_id].result`. Read the engine's shape first, the documented one otherwise,
 * never both (a server that sends both would count every row twice).
 */
function policyTables(result: Record<string, unknown>): Table[] {
  const engine = tablesIn(result['result']);
  return engine.length > 0 ? engine : tablesIn(result);
}

function stopReasonsOf(detail: unknown): { stop: StopReason[]; warn: number; finalActionReason?: string } {
  const out: { stop: StopReason[]; warn: number; finalActionReason?: string } = { stop: [], warn: 0 };
  if (!isObject(detail) || !isObject(detail['result'])) return out;
  const result = detail['result'];
  if (typeof result['final_action_reason'] === 'string') out.finalActionReason = result['final_action_reason'];
  for (const table of policyTables(result)) {
    const header = table['header'];
    const rows = table['rows'];
    if (!Array.isArray(header) || !Array.isArray(rows)) continue;
    const col = (name: string): number => header.indexOf(name);
    const [gate, trigger, output, action, whitelisted] = [
      col('Gate'),
      col('Trigger'),
      col('Check_Output'),
      col('Gate_Action'),
      col('Whitelisted'),
    ];
    if (action < 0) throw new ScannerProtocolError('scanner check detail has no Gate_Action column');
    for (const row of rows) {
      if (!Array.isArray(row)) continue;
      const w: unknown = whitelisted >= 0 ? row[whitelisted] : false;
      if (w !== false && w !== undefined && w !== null && w !== 'false') continue;
      const act = String(row[action] ?? '').toLowerCase();
      if (act === 'stop') {
        out.stop.push({
          gate: String(row[gate] ?? 'unknown'),
          trigger: String(row[trigger] ?? 'unknown'),
          output: String(row[output] ?? ''),
        });
      } else if (act === 'warn') {
        out.warn += 1;
      }
    }
  }
  return out;
}

/**
 * Parses the nested check response `[{digest: {fulltag: [evaluation, ...]}}]` for our digest and tag.
 * The digest is authoritative; the tag key is matched normalised, or is the digest's only key.
 */
export function parseCheck(body: unknown, digest: string, tag: string): PolicyEvaluation {
  if (!Array.isArray(body)) throw new ScannerProtocolError('scanner check response is not an array');
  const byDigest = body.find((e): e is Record<string, unknown> => isObject(e) && isObject(e[digest]));
  const byTag = byDigest?.[digest];
  if (!isObject(byTag)) throw new ScannerProtocolError(`scanner check response has no entry for ${digest}`);
  const keys = Object.keys(byTag);
  const key = keys.find((k) => sameImageTag(k, tag)) ?? (keys.length === 1 ? keys[0] : undefined);
  const evaluations = key === undefined ? undefined : byTag[key];
  if (!Array.isArray(evaluations) || evaluations.length === 0 || !isObject(evaluations[0])) {
    throw new ScannerProtocolError(`scanner check response has no evaluation for ${tag}`);
  }
  const evaluation = evaluations[0];
  const status = evaluation['status'];
  if (status !== 'pass' && status !== 'fail') {
    throw new ScannerProtocolError(`scanner check status is ${JSON.stringify(status)}, expected pass or fail`);
  }
  const reasons = stopReasonsOf(evaluation['detail']);
  // A pass with a stop row, or with `final_action: stop`, contradicts itself: a scanner error, never a
  // pass (docs/THREAT-MODEL.md, I4).
  const detail = evaluation['detail'];
  const result = isObject(detail) && isObject(detail['result']) ? detail['result'] : {};
  const finalAction = typeof result['final_action'] === 'string' ? result['final_action'].toLowerCase() : undefined;
  if (status === 'pass' && (reasons.stop.length > 0 || finalAction === 'stop')) {
    throw new ScannerProtocolError(`scanner check says pass with ${reasons.stop.length > 0 ? `${reasons.stop.length} stop row(s)` : 'final_action stop'}: contradictory answer`);
  }
  return {
    status,
    ...(typeof evaluation['policyId'] === 'string' ? { policyId: evaluation['policyId'] } : {}),
    stopReasons: reasons.stop,
    warnCount: reasons.warn,
    ...(reasons.finalActionReason !== undefined ? { finalActionReason: reasons.finalActionReason } : {}),
  };
}

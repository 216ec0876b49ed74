/**
 * Break-glass proofs: how a pod that a controller makes from a workload's template earns the break-glass
 * a person used on that template. A controller's identity proves nothing (it copies whatever a tenant
 * wrote into the template), so trust rests on a text only scangate can write: when a person allowed to
 * break glass writes a template with `scangate.io/break-glass`, the mutating entry (`/mutate`) adds
 * `scangate.io/break-glass-proof`, an HMAC-SHA256 over the namespace, the template's images, the reason,
 * the person and an expiry, under a key only scangate holds (BREAK_GLASS_KEY_FILE). The pod entry
 * verifies it against the pod's own namespace, images and reason. A tenant cannot write one; copying one
 * helps only for the same namespace, images and reason, which the person allowed, until it expires.
 * When no proof can be written (the mutating entry down, no key), the controller's pods are refused:
 * the failure denies. Pure apart from the HMAC.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const BREAK_GLASS_PROOF_ANNOTATION = 'scangate.io/break-glass-proof';

/** The proof's format version: the first field of its text. */
const VERSION = 'v1';
/** Bound of a proof's text before it is parsed (it is tenant-writable: a copied or forged annotation). */
export const MAX_PROOF_LENGTH = 64 * 1024;
/** Bound of the images one proof names (MAX_IMAGES_PER_REVIEW is at most this many distinct images). */
const MAX_PROOF_IMAGES = 256;
/** A key shorter than this is refused at start (config.ts reads it). */
export const MIN_PROOF_KEY_BYTES = 32;

export interface ProofSubject {
  readonly namespace: string;
  /** Every image the template (or pod) names, in any order, repeats allowed. */
  readonly images: readonly string[];
  /** The break-glass annotation's text, as written. */
  readonly reason: string;
}

export interface Proof {
  /** The person who broke glass (their username, as the API server authenticated them). */
  readonly user: string;
  /** Expiry, seconds since the epoch. */
  readonly expiresAtS: number;
  readonly images: readonly string[];
}

export type ProofCheck =
  | { readonly ok: true; readonly proof: Proof }
  | { readonly ok: false; readonly why: 'malformed' | 'forged' | 'expired' | 'images' };

export interface ProofKeeper {
  /** The annotation text proving that `user` broke glass for `subject`, valid for the configured TTL. */
  mint(subject: ProofSubject, user: string): string;
  /** Whether `text` proves break-glass for a pod in `subject.namespace` running `subject.images`. */
  verify(text: string, subject: ProofSubject): ProofCheck;
}

export interface ProofKeeperOptions {
  readonly key: Buffer;
  /** How long a proof lets pods in (BREAK_GLASS_PROOF_TTL_S), ms. */
  readonly ttlMs: number;
  /** Wall clock (ms since the epoch); tests inject one. */
  readonly now?: () => number;
}

function distinctSorted(images: readonly string[]): string[] {
  return [...new Set(images)].sort();
}

/** Unambiguous: a JSON array, whatever characters the fields hold. */
function signedText(namespace: string, expiresAtS: number, user: string, reason: string, images: readonly string[]): string {
  return JSON.stringify([VERSION, namespace, expiresAtS, user, reason, images]);
}

export function createProofKeeper(opts: ProofKeeperOptions): ProofKeeper {
  const now = opts.now ?? Date.now;
  const mac = (text: string): Buffer => createHmac('sha256', opts.key).update(text, 'utf8').digest();
  return {
    mint(subject, user) {
      const images = distinctSorted(subject.images);
      const expiresAtS = Math.floor((now() + opts.ttlMs) / 1000);
      const body = Buffer.from(JSON.stringify({ u: user, e: expiresAtS, i: images }), 'utf8').toString('base64url');
      const tag = mac(signedText(subject.namespace, expiresAtS, user, subject.reason, images)).toString('base64url');
      return `${VERSION}.${body}.${tag}`;
    },
    verify(text, subject) {
      if (text.length > MAX_PROOF_LENGTH) return { ok: false, why: 'malformed' };
      const parts = text.split('.');
      if (parts.length !== 3 || parts[0] !== VERSION) return { ok: false, why: 'malformed' };
      let fields: unknown;
      try {
        fields = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8'));
      } catch {
        return { ok: false, why: 'malformed' };
      }
      if (typeof fields !== 'object' || fields === null) return { ok: false, why: 'malformed' };
      const { u: user, e: expiresAtS, i: images } = fields as Record<string, unknown>;
      if (typeof user !== 'string' || typeof expiresAtS !== 'number' || !Number.isSafeInteger(expiresAtS)) return { ok: false, why: 'malformed' };
      if (!Array.isArray(images) || images.length > MAX_PROOF_IMAGES || !images.every((i): i is string => typeof i === 'string')) {
        return { ok: false, why: 'malformed' };
      }
      const expected = mac(signedText(subject.namespace, expiresAtS, user, subject.reason, images));
      const given = Buffer.from(parts[2] ?? '', 'base64url');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, why: 'forged' };
      if (expiresAtS * 1000 <= now()) return { ok: false, why: 'expired' };
      // Exactly the texts the person allowed (pinned or not as the template was when the proof was
      // written): `name:tag@<another digest>` would be another image of that repository.
      const allowed = new Set(images);
      if (!subject.images.every((i) => allowed.has(i))) return { ok: false, why: 'images' };
      return { ok: true, proof: { user, expiresAtS, images } };
    },
  };
}

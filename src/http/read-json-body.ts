import type { IncomingMessage } from 'node:http';
import { BadRequestError, OverloadedError } from '../errors.js';
import type { Claim, FairShare } from './fair-share.js';

/**
 * Bytes of request bodies held at once by the whole process (MAX_INFLIGHT_BODY_BYTES), shared fairly
 * between peers (fair-share.ts): a body's bytes are taken as they arrive (or all at once when
 * Content-Length announces them) and given back when its request has been answered, since the parsed
 * body lives until then. Slow or stalled uploads, and requests waiting for scans, therefore cannot hold
 * more of the heap than this, however many connections; and an upload still arriving can be cut to make
 * room for a peer that holds less, so one client's stalled uploads do not shut out the API server.
 */
export type BodyBudget = FairShare<BodyHold>;

/** What a request holds of the budget; `release` is idempotent and must run once it is answered. */
export interface BodyHold extends Claim {
  /** True until the body's last byte has arrived: only then can the hold be cut for another peer. */
  uploading: boolean;
  release(): void;
}

function overloaded(budget: BodyBudget): OverloadedError {
  return new OverloadedError(`scangate is reading ${budget.capacity} bytes of request bodies already (MAX_INFLIGHT_BODY_BYTES); retry`, 'body_bytes');
}

/**
 * Reads a request body as JSON, refusing more than `maxBytes` (413), invalid JSON (400) and, when the
 * process-wide `budget` is spent, any more bytes (503). `hold` records what was taken from the budget.
 */
export async function readJsonBody(req: IncomingMessage, maxBytes: number, budget?: BodyBudget, hold?: BodyHold): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.resume();
    throw new BadRequestError(`request body is larger than ${maxBytes} bytes`, 413);
  }
  const take = (bytes: number): boolean => {
    if (budget === undefined || hold === undefined) return true;
    return budget.take(hold, bytes);
  };
  // Announced bodies take their whole size up front, so a refusal comes before any byte is read.
  const announced = Number.isFinite(declared) && declared > 0 ? declared : 0;
  if (announced > 0 && !take(announced)) {
    req.resume();
    throw overloaded(budget as BodyBudget);
  }
  // Plain listeners rather than `for await`: this is the hot path of every admission.
  const chunks: Buffer[] = [];
  let size = 0;
  let taken = announced;
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        req.off('data', onData);
        req.resume();
        reject(new BadRequestError(`request body is larger than ${maxBytes} bytes`, 413));
        return;
      }
      // A body without Content-Length (chunked), or longer than announced, takes as it grows.
      if (size > taken) {
        if (!take(size - taken)) {
          req.off('data', onData);
          req.resume();
          reject(overloaded(budget as BodyBudget));
          return;
        }
        taken = size;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    let ended = false;
    req.once('end', () => {
      ended = true;
      if (hold !== undefined) hold.uploading = false;
      resolve();
    });
    req.once('error', reject);
    // A client that goes away mid-body must not leave this request waiting forever.
    req.once('close', () => {
      if (!ended) reject(new BadRequestError('request body was cut off'));
    });
  });
  if (size === 0) throw new BadRequestError('request body is empty');
  const text = Buffer.concat(chunks, size).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    // RangeError here means nesting deep enough to exhaust the stack: still the client's fault.
    const detail = error instanceof SyntaxError ? error.message : 'nesting too deep';
    throw new BadRequestError(`request body is not valid JSON (${detail.slice(0, 120)})`, 400, { cause: error });
  }
}

import type { IncomingMessage } from 'node:http';
import { BadRequestError } from '../errors.js';

/** Reads a request body as JSON, refusing more than `maxBytes` (413) and invalid JSON (400). */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.resume();
    throw new BadRequestError(`request body is larger than ${maxBytes} bytes`, 413);
  }
  // Plain listeners rather than `for await`: this is the hot path of every admission.
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        req.off('data', onData);
        req.resume();
        reject(new BadRequestError(`request body is larger than ${maxBytes} bytes`, 413));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    let ended = false;
    req.once('end', () => {
      ended = true;
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

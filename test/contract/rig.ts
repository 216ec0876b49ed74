/**
 * The contract rig: the real scanner simulator, a recording proxy in front of it, and assertions
 * that every recorded exchange conforms to a contract. Real sockets on 127.0.0.1 only.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startScannerSimulator, type ScannerSimulator, type SimulatorOptions } from '@scangate/simulator';
import type { ApiContract, HttpExchange } from './openapi-contract.js';
import { startRecordingProxy, type RecordingProxy } from './recording-proxy.js';

export interface Rig {
  readonly simulator: ScannerSimulator;
  readonly proxy: RecordingProxy;
  /** The scanner URL a client under test is given: the proxy, with the simulator's base path. */
  readonly url: string;
  close(): Promise<void>;
}

/** Starts the simulator (v1 by default; `api: 'v2'` for Enterprise v2) and a proxy in front of it. */
export async function startRig(options: SimulatorOptions = {}): Promise<Rig> {
  const simulator = await startScannerSimulator(options);
  const proxy = await startRecordingProxy(simulator.url, new URL(simulator.url).pathname);
  return {
    simulator,
    proxy,
    url: proxy.url,
    async close() {
      await proxy.close();
      await simulator.close();
    },
  };
}

/** One line per exchange, for assertion messages. */
export function describeExchange(e: HttpExchange): string {
  const body = e.response.body.toString('utf8');
  return `${e.request.method} ${e.request.url} -> ${String(e.response.status)} ${body.length > 300 ? `${body.slice(0, 300)}...` : body}`;
}

/** The contract problems of every exchange, keyed by the exchange; [] when all conform. */
export function contractProblems(contract: ApiContract, exchanges: readonly HttpExchange[], side: 'both' | 'response' = 'both'): string[] {
  return exchanges.flatMap((e) => {
    const problems = side === 'both' ? contract.check(e) : contract.checkResponse(e);
    return problems.map((p) => `${p}\n    in ${describeExchange(e)}`);
  });
}

/**
 * Asserts that the exchanges are not empty and conform to the contract on both sides, and returns
 * the operation ids they used (so a test can also assert what was exercised).
 */
export function assertConforms(contract: ApiContract, exchanges: readonly HttpExchange[], side: 'both' | 'response' = 'both'): string[] {
  assert.ok(exchanges.length > 0, 'no exchange was recorded: the contract would pass vacuously');
  const problems = contractProblems(contract, exchanges, side);
  assert.deepEqual(problems, [], `${contract.name} contract violations:\n${problems.join('\n')}`);
  return exchanges.map((e) => {
    const m = contract.match(e.request.method, e.request.url);
    assert.ok(m.ok, m.ok ? '' : m.problem);
    return `${m.operation.operationId} ${String(e.response.status)}`;
  });
}

export interface Answer {
  readonly status: number;
  readonly headers: globalThis.Headers;
  /** Parsed JSON, or the text when the body is not JSON. */
  readonly body: unknown;
}

export const SIM_AUTH = `Basic ${Buffer.from('admin:foobar').toString('base64')}`;

/**
 * One request through the rig's proxy. `path` is below the API base (`/images`), or below the
 * server's origin with `atRoot`; credentials are the simulator's defaults unless `auth: false`.
 */
export async function send(
  rig: Rig,
  method: string,
  path: string,
  options: { body?: unknown; auth?: boolean; atRoot?: boolean; contentType?: string } = {},
): Promise<Answer> {
  const base = options.atRoot === true ? new URL(rig.url).origin : rig.url;
  const headers: Record<string, string> = {};
  if (options.auth !== false) headers['authorization'] = SIM_AUTH;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] = options.contentType ?? 'application/json';
  }
  const res = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/**
 * Property: every body of `bodies` that the document refuses, the simulator refuses too (400), and
 * every answer conforms. `post` sends one body; enough of the bodies must be refusals (else the
 * property would pass on valid bodies alone).
 */
export async function assertRefusesWhatTheDocumentRefuses(
  rig: Rig,
  contract: ApiContract,
  bodies: fc.Arbitrary<unknown>,
  post: (body: unknown) => Promise<Answer>,
): Promise<void> {
  let refusedByDocument = 0;
  await fc.assert(
    fc.asyncProperty(bodies, async (b) => {
      rig.proxy.clear();
      const got = await post(b);
      const [e] = rig.proxy.exchanges;
      if (e === undefined) return false;
      assert.deepEqual(contract.checkResponse(e), [], `response to ${JSON.stringify(b)}`);
      if (contract.checkRequest(e.request).length === 0) return true;
      refusedByDocument += 1;
      return got.status === 400;
    }),
    { numRuns: 150, seed: 20261202 },
  );
  assert.ok(refusedByDocument > 30, `the property exercised only ${String(refusedByDocument)} refused bodies`);
}

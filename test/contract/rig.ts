/**
 * The contract rig: the real scanner simulator, a recording proxy in front of it, and assertions
 * that every recorded exchange conforms to a contract. Real sockets on 127.0.0.1 only.
 */
import assert from 'node:assert/strict';
import { startScannerSimulator, type ScannerSimulator, type SimulatorOptions } from '../../src/simulator/server.js';
import type { ApiContract, HttpExchange } from './openapi-contract.js';
import { startRecordingProxy, type RecordingProxy } from './recording-proxy.js';

export interface Rig {
  readonly simulator: ScannerSimulator;
  readonly proxy: RecordingProxy;
  /** The scanner URL a client under test is given: the proxy, with the simulator's base path. */
  readonly url: string;
  close(): Promise<void>;
}

export async function startRig(options: SimulatorOptions & { basePath?: string } = {}): Promise<Rig> {
  const basePath = options.basePath ?? '/v1';
  const simulator = await startScannerSimulator({ ...options, basePath });
  const proxy = await startRecordingProxy(simulator.url, basePath);
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

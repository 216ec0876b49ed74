/**
 * autocannon runs, with every response's latency kept (autocannon's own histogram has 1 ms
 * resolution; cache hits take well under 1 ms, so p50/p99 are computed from the raw samples).
 */
import autocannon from 'autocannon';
import { summarize } from './stats.mjs';

/**
 * Runs autocannon against `url` and returns throughput, latency percentiles and error counts.
 * `requests` (autocannon's request list) replaces `body` when given; `duration` (s) or `amount`.
 */
export async function load({ url, body, requests, connections, duration, amount, timeoutS = 30 }) {
  const latencies = [];
  const statuses = {};
  const instance = autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    ...(body !== undefined ? { body } : {}),
    ...(requests !== undefined ? { requests } : {}),
    connections,
    pipelining: 1,
    timeout: timeoutS,
    ...(amount !== undefined ? { amount } : { duration }),
  });
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
    latencies.push(responseTime);
  });
  const result = await instance;
  const s = summarize(latencies);
  return {
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statuses,
    durationS: result.duration,
    rps: result['2xx'] / result.duration,
    p50: s.p50,
    p99: s.p99,
    max: s.max,
    latencies,
  };
}

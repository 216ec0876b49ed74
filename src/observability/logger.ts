import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Paths that could ever carry a secret. scangate never puts credentials in log fields to begin with;
 * this is the second line of defence (axios configs, request headers). Exact paths only: a wildcard
 * path costs about 9 µs per line, four times the cost of the line itself (bench/, docs/BENCHMARKS.md).
 */
export const REDACT_PATHS = [
  'password',
  'pass',
  'auth',
  'authorization',
  'token',
  'headers.authorization',
  'config.auth',
  'config.headers.authorization',
  'err.config.auth',
  'err.config.headers.authorization',
  'scanner.password',
  'scanner.pass',
];

export function createLogger(opts: { level: string; name?: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      name: opts.name ?? 'scangate',
      level: opts.level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination,
  );
}

import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Paths that could ever carry a secret. scangate never puts credentials in log fields to begin with;
 * this is the second line of defence (axios configs, request headers).
 */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'pass',
  '*.pass',
  'auth',
  '*.auth',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'config.auth',
  '*.config.auth',
  'token',
  '*.token',
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

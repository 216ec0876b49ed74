/**
 * `scanner-sim` (`node simulator/dist/main.js`): runs the scanner simulator until SIGINT/SIGTERM. The
 * entry point (main.ts) hands over argv and env; this is the only simulator module that reads them or
 * handles signals.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadSimulatorData, SAMPLE_DATA_URL } from './data.js';
import { SimulatorConfigError } from './errors.js';
import { parseFaultConfig } from './faults.js';
import { SIMULATOR_APIS, startScannerSimulator, type SimulatorApi, type SimulatorOptions } from './server.js';

export const SIMULATOR_USAGE = `usage: scanner-sim [options]   (node simulator/dist/main.js, or make scanner-sim ARGS="...")

Runs an Anchore API simulator until SIGINT/SIGTERM: Anchore Engine's v1 API, Anchore
Enterprise's v2 API, or both, with the same images, analysis lifecycle, verdicts and faults.

  --api v1|v2|both          API served (default v1). v2 = Anchore Enterprise 5 (v2 only: /v2/...,
                            GET /v2/version says api.version "2"); both = Enterprise 4.9.x
  --host HOST               listen address (default 127.0.0.1)
  --port N                  listen port (default 8228; 0 = ephemeral)
  --base-path PATH          v1 API prefix (default /v1; ANCHORE_CLI_URL = http://HOST:PORT/v1)
  --v2-base-path PATH       v2 API prefix (default /v2; ANCHORE_CLI_URL = http://HOST:PORT)
  --data FILE               scanner data file (default: simulator/scanner-data.json)
  --analysis-delay-ms N     time from submission to 'analyzed' (default 0)
  --user USER               Basic auth user (default: $ANCHORE_CLI_USER, else admin)
  --pass PASS               Basic auth password (default: $ANCHORE_CLI_PASS, else foobar)
  --pass-file FILE          read the password from FILE (trailing newline removed)
  --faults JSON             initial fault config (see PUT /_sim/faults)
  --record N                keep the last N requests and answers (GET /_sim/exchanges; default 0)
  --verbose                 log faults and admin changes as JSON lines
  --help                    show this text

Admin (no auth): PUT /_sim/faults, PUT /_sim/analysis-delay {"ms":N}, GET /_sim/stats,
GET /_sim/exchanges, POST /_sim/reset`;

export interface SimulatorCliIo {
  readonly stdout?: { write(text: string): unknown };
  readonly stderr?: { write(text: string): unknown };
  /** Stops the simulator like a signal does (for in-process callers and tests). */
  readonly signal?: AbortSignal;
}

function integerFlag(name: string, value: string | undefined, min: number, max: number, problems: string[]): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    problems.push(`--${name} must be an integer from ${String(min)} to ${String(max)}, got ${JSON.stringify(value)}`);
    return undefined;
  }
  return n;
}

/** Returns the process exit code: 0 after a clean stop, 2 for bad arguments or start-up errors. */
export async function runSimulatorCli(argv: string[], env: NodeJS.ProcessEnv, io: SimulatorCliIo = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      allowPositionals: false,
      strict: true,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        api: { type: 'string' },
        'base-path': { type: 'string' },
        'v2-base-path': { type: 'string' },
        record: { type: 'string' },
        data: { type: 'string' },
        'analysis-delay-ms': { type: 'string' },
        user: { type: 'string' },
        pass: { type: 'string' },
        'pass-file': { type: 'string' },
        faults: { type: 'string' },
        verbose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    stderr.write(`scanner-sim: ${(err as Error).message}\n${SIMULATOR_USAGE}\n`);
    return 2;
  }
  if (values.help === true) {
    stdout.write(`${SIMULATOR_USAGE}\n`);
    return 0;
  }

  const problems: string[] = [];
  const port = integerFlag('port', values.port, 0, 65535, problems) ?? 8228;
  const api = values.api ?? 'v1';
  if (!(SIMULATOR_APIS as readonly string[]).includes(api)) problems.push(`--api must be one of ${SIMULATOR_APIS.join(', ')}, got ${JSON.stringify(api)}`);
  const record = integerFlag('record', values.record, 0, 100_000, problems) ?? 0;
  const analysisDelayMs = integerFlag('analysis-delay-ms', values['analysis-delay-ms'], 0, 86_400_000, problems) ?? 0;
  if (values.pass !== undefined && values['pass-file'] !== undefined) problems.push('give --pass or --pass-file, not both');
  let password = values.pass ?? env['ANCHORE_CLI_PASS'] ?? 'foobar';
  if (values['pass-file'] !== undefined) {
    try {
      password = (await readFile(values['pass-file'], 'utf8')).replace(/\r?\n$/, '');
    } catch (err) {
      problems.push(`--pass-file: cannot read ${values['pass-file']}: ${(err as Error).message}`);
    }
  }
  let faults;
  if (values.faults !== undefined) {
    try {
      faults = parseFaultConfig(JSON.parse(values.faults));
    } catch (err) {
      problems.push(`--faults: ${(err as Error).message}`);
    }
  }
  const dataFile = values.data ?? fileURLToPath(SAMPLE_DATA_URL);
  let data;
  try {
    data = await loadSimulatorData(dataFile);
  } catch (err) {
    problems.push(err instanceof SimulatorConfigError ? err.message : String(err));
  }
  if (problems.length > 0 || data === undefined) {
    stderr.write(`scanner-sim: cannot start:\n  - ${problems.join('\n  - ')}\n`);
    return 2;
  }

  const verbose = values.verbose === true;
  const options: SimulatorOptions = {
    api: api as SimulatorApi,
    host: values.host ?? '127.0.0.1',
    port,
    basePath: values['base-path'] ?? '/v1',
    v2BasePath: values['v2-base-path'] ?? '/v2',
    record,
    user: values.user ?? env['ANCHORE_CLI_USER'] ?? 'admin',
    password,
    analysisDelayMs,
    data,
    faults,
    logger: verbose ? { info: (obj, msg) => stdout.write(`${JSON.stringify({ ...obj, msg })}\n`) } : undefined,
  };
  let simulator;
  try {
    simulator = await startScannerSimulator(options);
  } catch (err) {
    stderr.write(`scanner-sim: cannot start: ${(err as Error).message}\n`);
    return 2;
  }
  // Never the password (nor the user, which is a token on Sysdig).
  stdout.write(
    `${JSON.stringify({ msg: 'scanner simulator listening', api: simulator.api, url: simulator.url, urls: simulator.urls, analysisDelayMs, data: dataFile })}\n`,
  );

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      io.signal?.removeEventListener('abort', stop);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (io.signal?.aborted === true) stop();
    else io.signal?.addEventListener('abort', stop, { once: true });
  });
  await simulator.close();
  return 0;
}

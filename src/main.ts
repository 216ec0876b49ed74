#!/usr/bin/env node
/**
 * scangate's composition root and CLI: the only module that reads process.env, opens sockets,
 * handles signals and picks implementations.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { checkExitCode, imagesFromArgs, renderCheck } from './cli/check.js';
import { runRef } from './cli/ref.js';
import { composeScangate } from './composition.js';
import { parseConfig } from './config.js';
import { ConfigError, describeError } from './errors.js';
import { startServer } from './http/server.js';
import { createLogger } from './observability/logger.js';

const USAGE = `usage: scangate <command> [options]

commands:
  serve        run the admission webhook (HTTPS)
               --host H --port P --tls-cert FILE --tls-key FILE [--insecure-http]
  check IMG..  judge images with the local rules and the scanner; --json, --timeout-ms N
               exit 0 allowed, 1 denied, 2 error (no verdict or bad configuration)
  ref IMG...   parse image references as the container runtime does (one JSON line each)

Settings come from the environment (ANCHORE_CLI_URL, ANCHORE_CLI_USER, ANCHORE_CLI_PASS,
REJECT_IF_TIMEOUT, ...): see README.md.`;

function readText(path: string): string {
  return readFileSync(path, 'utf8');
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'insecure-http': { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const config = parseConfig(
    process.env,
    {
      ...(values.host !== undefined ? { host: values.host } : {}),
      ...(values.port !== undefined ? { port: values.port } : {}),
      ...(values['tls-cert'] !== undefined ? { tlsCert: values['tls-cert'] } : {}),
      ...(values['tls-key'] !== undefined ? { tlsKey: values['tls-key'] } : {}),
      ...(values['insecure-http'] === true ? { insecureHttp: true } : {}),
    },
    readText,
  );
  const logger = createLogger({ level: config.logLevel });
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: describeError(reason) }, 'unhandled rejection (bug): request answered, process kept alive');
  });
  const scangate = composeScangate(config, { logger, defaultMetrics: true });
  const { certFile, keyFile } = { certFile: config.server.tlsCertFile, keyFile: config.server.tlsKeyFile };
  const running = await startServer(scangate.app, {
    host: config.server.host,
    port: config.server.port,
    ...(!config.server.insecureHttp && certFile !== undefined && keyFile !== undefined
      ? { tls: { certFile, keyFile, reloadIntervalMs: config.server.certReloadIntervalMs } }
      : {}),
    logger,
    maxConnections: config.server.maxConnections,
    ...scangate.connectionEvents,
  });
  scangate.state.ready = true;
  logger.info(
    {
      url: running.url,
      port: running.port,
      tls: !config.server.insecureHttp,
      scanner: new URL(config.scanner.url).origin,
      rejectIfTimeout: config.decision.rejectIfTimeout,
      mode: config.decision.mode,
      denyLatestTag: config.rules.denyLatestTag,
      registryAllowlist: config.rules.registryAllowlist,
      exemptNamespaces: config.exemptNamespaces,
    },
    'scangate listening',
  );
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      scangate.state.ready = false;
      logger.info({ signal }, 'shutting down: readiness off, answering in-flight requests');
      setTimeout(() => {
        void running.close(config.server.shutdownTimeoutMs).then(() => {
          scangate.close();
          logger.info('stopped');
          resolve(0);
        });
      }, config.server.shutdownDelayMs).unref();
    };
    process.once('SIGTERM', () => {
      stop('SIGTERM');
    });
    process.once('SIGINT', () => {
      stop('SIGINT');
    });
  });
}

async function check(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, 'timeout-ms': { type: 'string' }, namespace: { type: 'string' } },
  });
  if (positionals.length === 0) {
    process.stderr.write('usage: scangate check [--json] [--timeout-ms N] IMAGE...\n');
    return 2;
  }
  const config = parseConfig({ LOG_LEVEL: 'warn', ...process.env }, { serving: false }, readText);
  const logger = createLogger({ level: config.logLevel, destination: pino.destination(2) });
  const timeoutMs = Number(values['timeout-ms'] ?? '120000');
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    process.stderr.write('--timeout-ms must be a positive number\n');
    return 2;
  }
  const scangate = composeScangate(config, { logger });
  let evaluation;
  try {
    evaluation = await scangate.evaluator.evaluate({
      images: imagesFromArgs(positionals),
      budgetMs: timeoutMs,
      ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
    });
  } finally {
    // Scans, keep-alive sockets and timers end here, so the process ends by itself.
    scangate.close();
  }
  process.stdout.write(`${renderCheck(evaluation, values.json === true)}\n`);
  return checkExitCode(evaluation);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'check':
      return check(rest);
    case 'ref':
      if (rest.length === 0) {
        process.stderr.write('usage: scangate ref IMAGE...\n');
        return 2;
      }
      return runRef(rest, (line) => process.stdout.write(`${line}\n`));
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command: ${command}\n\n${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`scangate: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    const { code, message } = describeError(error);
    process.stderr.write(`scangate: ${code}: ${message}\n`);
    process.exitCode = 2;
  },
);

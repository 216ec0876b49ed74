#!/usr/bin/env node
/**
 * scangate's composition root and CLI: the only module that reads process.env, opens sockets,
 * handles signals and picks implementations.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { checkExitCode, imagesFromArgs, renderCheck } from './cli/check.js';
import { runRef } from './cli/ref.js';
import { composeRecheck, composeScangate, type Recheck, type Scangate } from './composition.js';
import { parseConfig, type Config } from './config.js';
import { ConfigError, describeError } from './errors.js';
import { startServer } from './http/server.js';
import { kubeCredentialSource } from './kube/credentials.js';
import type { EventSink } from './observability/events.js';
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

/**
 * Where Kubernetes Events go: the API server of KUBECONFIG, or of the pod's service account
 * (kube/event-sink.ts); none when EVENTS_ENABLED=false, or when it is auto and neither is there.
 * The Kubernetes client is loaded only here, so CLI commands do not pay for it.
 */
async function eventSinkFor(config: Config, logger: Logger): Promise<EventSink | undefined> {
  if (config.events.enabled === false) {
    logger.info('Kubernetes Events off (EVENTS_ENABLED=false)');
    return undefined;
  }
  if (kubeCredentialSource(process.env, existsSync) === undefined) {
    if (config.events.enabled === true) {
      throw new ConfigError(['EVENTS_ENABLED=true, but no Kubernetes credentials were found: set KUBECONFIG, or run in a pod with a service account token']);
    }
    logger.info('Kubernetes Events off: no KUBECONFIG and no service account token (EVENTS_ENABLED=auto)');
    return undefined;
  }
  const kube = await import('./kube/event-sink.js');
  let credentials: ReturnType<typeof kube.loadKubeCredentials>;
  try {
    credentials = kube.loadKubeCredentials(process.env, existsSync);
  } catch (error) {
    // Not the parser's message: it may quote the file, and a kubeconfig holds credentials.
    const code = error instanceof Error && 'code' in error ? String(error.code) : 'not a usable kubeconfig';
    throw new ConfigError([`KUBECONFIG: cannot load it (${code}); unset it, or set EVENTS_ENABLED=false`]);
  }
  if (credentials === undefined) return undefined;
  logger.info({ source: credentials.source, server: credentials.server }, 'Kubernetes Events on');
  return kube.createKubeEventSink({ kubeConfig: credentials.kubeConfig, reportingInstance: config.podName ?? hostname() });
}

/**
 * Re-verification of running workloads (RECHECK_ENABLED): the Lease and the pod watch on the API
 * server of KUBECONFIG or of the pod's service account; refused at start without either.
 */
async function recheckFor(config: Config, scangate: Scangate, logger: Logger): Promise<Recheck | undefined> {
  if (!config.recheck.enabled) return undefined;
  const kube = await import('./kube/event-sink.js');
  const kubeRecheck = await import('./kube/recheck-kube.js');
  let credentials: ReturnType<typeof kube.loadKubeCredentials>;
  try {
    credentials = kube.loadKubeCredentials(process.env, existsSync);
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? String(error.code) : 'not a usable kubeconfig';
    throw new ConfigError([`KUBECONFIG: cannot load it (${code})`]);
  }
  if (credentials === undefined) {
    throw new ConfigError(['RECHECK_ENABLED=true, but no Kubernetes credentials were found: set KUBECONFIG, or run in a pod with a service account token']);
  }
  const { kubeConfig } = credentials;
  const identity = `${config.podName ?? hostname()}_${randomBytes(4).toString('hex')}`;
  logger.info({ lease: `${config.recheck.leaseNamespace}/${config.recheck.leaseName}`, identity, server: credentials.server }, 're-verification of running workloads on');
  return composeRecheck(scangate, {
    leaseApi: kubeRecheck.createKubeLeaseApi({ kubeConfig, namespace: config.recheck.leaseNamespace, name: config.recheck.leaseName }),
    podSource: (handlers) => kubeRecheck.createPodSource({ kubeConfig, ...handlers }),
    identity,
    logger,
  });
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
  const eventSink = await eventSinkFor(config, logger);
  const scangate = composeScangate(config, { logger, defaultMetrics: true, ...(eventSink !== undefined ? { eventSink } : {}) });
  const recheck = await recheckFor(config, scangate, logger);
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
  recheck?.start();
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
        void running
          .close(config.server.shutdownTimeoutMs)
          // The Lease released at once, so another replica takes the loop without waiting for it to expire.
          .then(() => recheck?.stop())
          // Events of the last answers are written, within the recorder's own bound.
          .then(() => scangate.events?.close())
          .then(() => {
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

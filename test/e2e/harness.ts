/**
 * Helpers for the end-to-end suite: child processes, ports, polling, log tails. Everything listens on
 * 127.0.0.1 and every process started here is stopped by pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from dist/test/e2e/). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
}

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly input?: string;
  readonly timeoutMs?: number;
  readonly cwd?: string;
  /** Where to append stderr as it arrives (long builds), instead of keeping it in memory only. */
  readonly stderrFile?: string;
}

/** Runs a command to completion; never throws for a non-zero exit (the caller asserts on `code`). */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const errFd = opts.stderrFile === undefined ? undefined : openSync(opts.stderrFile, 'a');
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? ROOT,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', errFd ?? 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            stderr += `\n[harness] ${cmd} killed after ${String(opts.timeoutMs)} ms`;
            child.kill('SIGKILL');
          }, opts.timeoutMs);
    child.on('error', (err) => {
      if (timer !== undefined) clearTimeout(timer);
      if (errFd !== undefined) closeSync(errFd);
      reject(err);
    });
    child.on('close', (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      if (errFd !== undefined) closeSync(errFd);
      resolve({ code: code ?? (signal === null ? 1 : 128), stdout, stderr, durationMs: performance.now() - started });
    });
    // A child that exits before reading its input closes the pipe: EPIPE then, which is no failure.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input ?? '');
  });
}

/** In CI a suite that cannot run here fails instead of being skipped. */
export const CI = process.env['CI'] === 'true';

export const MINUTE = 60_000;

/** A suite's log: `[tag] message` lines on stderr. */
export function logTo(tag: string): (message: string) => void {
  return (message) => {
    process.stderr.write(`[${tag}] ${message}\n`);
  };
}

/** `<name> is not installed` for each command of `names` missing from PATH. */
export function missingCommands(names: readonly string[]): string[] {
  return names.filter((c) => !haveCommand(c)).map((c) => `${c} is not installed`);
}

/** What `scripts/<script> --check` reports on stderr when it fails (`fallback` when silent), or undefined. */
export function scriptCheck(script: string, fallback = `${script} --check failed`): string | undefined {
  const r = spawnSync('bash', [join(ROOT, 'scripts', script), '--check'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : r.stderr.trim() || fallback;
}

/**
 * Why a suite cannot run here (`needs`: what it needs, then the problems), or undefined when nothing
 * is missing. With CI=true a problem is never a skip: the suite runs, and fails on what is missing.
 */
export function skipReason(log: (message: string) => void, needs: string, problems: readonly string[]): string | undefined {
  if (problems.length === 0) return undefined;
  const reason = `${needs}: ${problems.join('; ')}`;
  if (CI) {
    log(`CI=true, so not skipping although ${reason}`);
    return undefined;
  }
  log(`skipping: ${reason}`);
  return reason;
}

export interface Scenarios {
  /** One test: its time in the log; on failure the suite's diagnostics, and the suite is marked failed. */
  readonly scenario: (name: string, fn: () => Promise<void>, timeoutMs?: number) => void;
  /** Set by a failed scenario (or by the suite's own set-up): the after hook keeps the logs then. */
  failed: boolean;
}

/** The scenarios of one e2e suite, each logged with `log`; `diagnostics` is what a failure prints. */
export function scenarios(log: (message: string) => void, diagnostics: () => string | Promise<string>, defaultTimeoutMs: number): Scenarios {
  const suite: Scenarios = {
    failed: false,
    scenario: (name, fn, timeoutMs = defaultTimeoutMs) => {
      it(name, { timeout: timeoutMs }, async () => {
        const started = performance.now();
        const seconds = (): string => ((performance.now() - started) / 1000).toFixed(1);
        try {
          await fn();
          log(`${name}: passed in ${seconds()} s`);
        } catch (err) {
          suite.failed = true;
          log(`${name}: FAILED after ${seconds()} s: ${String(err)}`);
          log(await diagnostics());
          throw err;
        }
      });
    },
  };
  return suite;
}

/** True when `name` is an executable on PATH. */
export function haveCommand(name: string): boolean {
  return spawnSync('bash', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/** A port the kernel reports free on 127.0.0.1 (closed again before it is returned). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `probe` until it returns something other than undefined. On timeout the error names what was
 * awaited and the last value `describe` gave, so a failure says where it stood.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  describe: () => string = () => '',
  intervalMs = 500,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() >= deadline) {
      const state = describe();
      throw new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}${state ? `; last state: ${state}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

/** The last `lines` lines of a file, or a note that it does not exist. */
export function tailFile(path: string, lines: number): string {
  if (!existsSync(path)) return `(no file ${path})`;
  const all = readFileSync(path, 'utf8').trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

/**
 * A long-running child (scangate, the scanner simulator) with its output in a log file. Its pid is also
 * written in the scripts' pid-file format, so cluster-down.sh (and the watchdog, should this test
 * process die) can stop it.
 */
export class LocalProcess {
  private readonly exited: Promise<void>;

  private constructor(
    readonly name: string,
    readonly logFile: string,
    private readonly child: ChildProcess,
    private readonly pidFile: string | undefined,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  static start(name: string, args: readonly string[], env: NodeJS.ProcessEnv, logFile: string, pidFile?: string): LocalProcess {
    const fd = openSync(logFile, 'a');
    const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    if (child.pid === undefined) throw new Error(`could not start ${name}`);
    if (pidFile !== undefined) {
      writeFileSync(pidFile, `${String(child.pid)}\n`);
      writeFileSync(`${pidFile}.cmd`, `${process.execPath}\n`);
    }
    const p = new LocalProcess(name, logFile, child, pidFile);
    LIVE.add(p);
    return p;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  async stop(graceMs = 5000): Promise<void> {
    LIVE.delete(this);
    if (this.running) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    if (this.pidFile !== undefined) {
      for (const f of [this.pidFile, `${this.pidFile}.cmd`]) rmSync(f, { force: true });
    }
  }

  tail(lines = 30): string {
    return tailFile(this.logFile, lines);
  }

  /** Synchronous last resort for process exit. */
  killNow(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}

const LIVE = new Set<LocalProcess>();
process.once('exit', () => {
  for (const p of LIVE) p.killNow();
});

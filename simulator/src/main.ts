#!/usr/bin/env node
/**
 * The simulator's entry point (`node simulator/dist/main.js`, `make scanner-sim`): the only module that
 * reads process.argv and process.env. A developer tool for the demo, tests and benchmarks; scangate's
 * image never holds it.
 */
import { runSimulatorCli } from './cli.js';

runSimulatorCli(process.argv.slice(2), process.env).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`scanner-sim: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 2;
  },
);

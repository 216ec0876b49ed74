/**
 * @scangate/simulator: an Anchore-compatible scanner simulator (v1, v2 or both APIs) for scangate's
 * tests, benchmarks and demo. Start one in-process with `startScannerSimulator`, or as a process with
 * `node simulator/dist/main.js` (`SIMULATOR_MAIN_JS`). The modules behind it are reachable as
 * `@scangate/simulator/internal/<module>` for the simulator's own unit tests.
 */
import { fileURLToPath } from 'node:url';

export {
  startScannerSimulator,
  SIMULATOR_APIS,
  type ScannerSimulator,
  type SimulatorApi,
  type SimulatorExchange,
  type SimulatorOptions,
  type SimulatorStats,
} from './server.js';
export type { TagStats } from './routing.js';
export { loadSimulatorData, loadSampleSimulatorData, SAMPLE_DATA_URL, type SimulatorData } from './data.js';
export { parseFaultConfig, type FaultConfig, type SimOperation } from './faults.js';
export { AnchoreApiError, SimulatorConfigError, SimulatorError } from './errors.js';
export { runSimulatorCli, SIMULATOR_USAGE, type SimulatorCliIo } from './cli.js';

/** The simulator's command line as a file to hand to `node` (spawned by the e2e suite and the benches). */
export const SIMULATOR_MAIN_JS = fileURLToPath(new URL('./main.js', import.meta.url));

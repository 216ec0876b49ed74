/**
 * The simulator's errors. Kept apart from src/errors.ts on purpose: the simulator plays a foreign
 * system and must not share code paths with the client it is used to test.
 */
export class SimulatorError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * An answer Anchore gives as an error body `{"message", "httpcode", "detail"}`. Thrown by the
 * engine, turned into an HTTP answer by the server, never a crash.
 */
export class AnchoreApiError extends SimulatorError {
  readonly httpcode: number;
  readonly detail: Record<string, unknown>;
  constructor(httpcode: number, message: string, detail: Record<string, unknown> = {}) {
    super('SIM_ERR_API', message);
    this.httpcode = httpcode;
    this.detail = detail;
  }

  toBody(): { message: string; httpcode: number; detail: Record<string, unknown> } {
    return { message: this.message, httpcode: this.httpcode, detail: this.detail };
  }
}

/** A data file or FaultConfig that does not validate; lists every problem at once. */
export class SimulatorConfigError extends SimulatorError {
  readonly problems: readonly string[];
  constructor(what: string, problems: readonly string[], options?: { cause?: unknown }) {
    super('SIM_ERR_CONFIG', `invalid ${what}:\n  - ${problems.join('\n  - ')}`, options);
    this.problems = problems;
  }
}

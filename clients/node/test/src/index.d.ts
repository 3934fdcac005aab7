// Types of @stockroom/test (docs/plugins/node.md).

export const URL_ENV: "STOCKROOM_AGENT_URL";
export const TOKEN_ENV: "STOCKROOM_AGENT_TOKEN";
export const FILE_ENV: "STOCKROOM_DATASETS_FILE";
export const MASK: "***";
export type Outcome = "passed" | "failed" | "cancelled" | "unused";
export const OUTCOMES: Outcome[];

export class StockroomError extends Error {}
export class NoAgentError extends StockroomError {}
export class AgentGoneError extends StockroomError {}
export class UnauthorizedError extends StockroomError {}
export class UnknownStateError extends StockroomError {
  knownStates: string[];
}
export interface Shortfall {
  name: string;
  wanted: number;
  ready: number;
  generating: number;
}
export class NoStockError extends StockroomError {
  shortfall: Shortfall[];
}

export type Attributes = Record<string, string | number | boolean>;

/** The agent's dataset body (snake_case, as on the wire). */
export interface DatasetBody {
  id: string;
  type: string;
  state: string;
  name?: string;
  index?: number;
  attributes?: Attributes;
  data?: unknown;
  secret_fields?: string[];
  entities?: string[];
  inputs?: Record<string, DatasetBody>;
}

/** One dataset taken for a test; inspect/toJSON mask its secret fields. */
export class Dataset<Data = Record<string, any>> {
  constructor(body: DatasetBody);
  readonly id: string;
  readonly type: string;
  readonly state: string;
  readonly name: string | null;
  readonly index: number;
  readonly attributes: Attributes;
  readonly data: Data;
  readonly entities: string[];
  readonly inputs: Record<string, Dataset>;
  readonly secretFields: string[];
  /** `type/state` */
  readonly stateRef: string;
  secretValues(): string[];
  maskedData(): Data;
  toJSON(): object;
}

export function parseStateRef(stateRef: string): [string, string];
export function scrub(text: string, secrets: string[]): string;
/** Replaces secret texts in an error (message, stack, assertion values), in place. */
export function scrubError<E>(error: E, secrets: string[]): E;

export interface TakeItem {
  name?: string;
  type: string;
  state: string;
  where?: Attributes;
  count?: number;
}

export class AgentClient {
  constructor(url: string, token?: string);
  readonly url: string;
  static fromEnv(env?: Record<string, string | undefined>): AgentClient;
  reserve(items: Omit<TakeItem, "name">[], options?: { waitSeconds?: number }): Promise<{ reserved: TakeItem[]; shortfall?: Shortfall[] }>;
  take(items: TakeItem[], options?: { test?: string; worker?: string; waitSeconds?: number }): Promise<{ takeId: string; datasets: Dataset[] }>;
  done(takeId: string, outcome: Outcome, reason?: string): Promise<{ datasets: { id: string; name: string; status: string }[] }>;
  takes(): Promise<unknown>;
}

export interface StockroomOptions {
  /** The test's id, sent with each take (default: Jest's/Vitest's current test name). */
  test?: string;
  /** The worker's id (default: JEST_WORKER_ID, VITEST_POOL_ID or TEST_WORKER_INDEX). */
  worker?: string;
  /** How long a take waits for stock (default 60). */
  waitSeconds?: number;
  /** Called with each dataset taken (the Playwright fixture annotates the test). */
  onTake?: (dataset: Dataset) => void;
  env?: Record<string, string | undefined>;
}

export interface TakeOptions {
  where?: Attributes;
  waitSeconds?: number;
  name?: string;
}

/** What one test (or worker) took; done() settles all of it. */
export class Stockroom {
  constructor(client: AgentClient, options?: StockroomOptions);
  static fromEnv(options?: StockroomOptions): Stockroom;
  readonly client: AgentClient;
  readonly datasets: Dataset[];
  take<Data = Record<string, any>>(stateRef: string, options?: TakeOptions & { count?: 1 }): Promise<Dataset<Data>>;
  take<Data = Record<string, any>>(stateRef: string, options: TakeOptions & { count: number }): Promise<Dataset<Data>[]>;
  done(outcome?: Outcome, options?: { reason?: string }): Promise<void>;
  secretValues(): string[];
}

/** Wraps a test function for any runner: done "passed" on return, "failed" on throw. */
export function withStockroom<Args extends unknown[], R>(
  fn: (stockroom: Stockroom, ...args: Args) => R | Promise<R>,
  options?: StockroomOptions,
): (...args: Args) => Promise<R>;

export type JobDatasets = Record<string, Dataset[]> & { readonly leaseId?: string; readonly shard?: { index: number; total: number }; readonly expiresAt?: string };
/** The job-level datasets file of `stockroom run`: a list per name, for any count. */
export function datasets(path?: string): Promise<JobDatasets>;

export interface RunningAgent {
  url: string;
  token: string;
  stop(): Promise<number | string | null>;
}
export function startAgent(options?: { binary?: string; readyTimeoutSeconds?: number }): Promise<RunningAgent>;

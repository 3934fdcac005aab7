// Types of @stockroom/generator (docs/generators.md).

import type { Server } from "node:http";

export declare const MAX_ANSWER_BYTES: number;
export declare const MAX_REQUEST_BYTES: number;
export declare const OPERATIONS: readonly Operation[];
/** Command-mode exit codes (sysexits.h). */
export declare const EXIT: Readonly<{ ok: 0; usage: 64; refused: 65; failed: 70; io: 74; config: 78 }>;

export type Operation = "capabilities" | "generate" | "extend" | "cleanup" | "reset" | "verify";
export type Data = Record<string, unknown>;

/** Throw it to refuse a request this generator cannot serve: HTTP 422 / exit 65, not retried. */
export declare class Refuse extends Error {
  constructor(message: string);
}

/** The generator's own declarations are inconsistent. */
export declare class DeclarationError extends Error {
  constructor(message: string);
}

/** One dataset as the pool sends it. Secret values never show in inspect() or JSON.stringify(). */
export declare class Dataset<D extends Data = Data> {
  id: string;
  type: string;
  state: string;
  attributes: Record<string, string>;
  data: D;
  secretFields: string[];
  entities: string[];
  /** A composed dataset's parts, by requirement name. */
  inputs: Record<string, Dataset>;
  static fromWire(value: unknown, where?: string): Dataset;
  /** The protocol's shape, secrets included. */
  toWire(): Record<string, unknown>;
}

export interface AnswerInit<D extends Data = Data> {
  /** For extend and reset, it replaces the old data: send everything back. */
  data: D;
  /** `kind:id` records a test may mutate; for extend and reset, left out keeps the dataset's. */
  entities?: string[];
  /** Left out, the requested attributes are echoed. */
  attributes?: Record<string, string | number | boolean>;
  /** Left out, the declared (or inherited) secret fields present in data. */
  secretFields?: string[];
}

export declare class Answer<D extends Data = Data> {
  constructor(init: AnswerInit<D>);
  data: D;
  entities?: string[];
  attributes?: Record<string, string>;
  secretFields?: string[];
}

export interface Requirement<N extends string = string> {
  name: N;
  type: string;
  state: string;
}

export interface StateSpec<R extends readonly Requirement[] = readonly Requirement[]> {
  type: string;
  state: string;
  description?: string;
  /** Attribute name to allowed values; an empty list allows any value. */
  attributes?: Record<string, ReadonlyArray<string | number | boolean>>;
  /** Promised in every answer's data; dotted paths reach into nested objects. */
  fields?: readonly string[];
  secretFields?: readonly string[];
  /** Datasets this state is built from, supplied as `req.inputs[name]`. */
  requires?: R;
  /** A reusable state goes back to stock after a passed run. */
  reusable?: boolean;
}

export interface ExtensionSpec {
  name: string;
  type: string;
  from: string;
  to: string;
  fields?: readonly string[];
  description?: string;
}

interface BaseRequest {
  operation: Operation;
  /** The same on every retry of the same step: use it to make a step idempotent. */
  requestId: string | null;
  type: string;
  state: string;
  attributes: Record<string, string>;
}

export interface GenerateRequest<N extends string = string> extends BaseRequest {
  operation: "generate";
  /** One dataset per declared requirement, by name. */
  inputs: { [K in N]: Dataset };
}

export interface DatasetRequest extends BaseRequest {
  operation: "extend" | "cleanup" | "reset" | "verify";
  inputs: Record<string, never>;
  extension?: string;
  dataset: Dataset;
}

type MaybePromise<T> = T | Promise<T>;
export type Verdict = boolean | { valid: boolean; reason?: string | null };

export interface Outcome {
  kind: "ok" | "refused" | "failed" | "unknown";
  body?: string;
  message?: string;
}

export interface GeneratorOptions {
  /** Prefixes log lines; default: the script's name. */
  name?: string;
  maxAnswerBytes?: number;
  /** Where log lines go; default: stderr. */
  log?: (line: string) => void;
}

export declare class Generator {
  constructor(options?: GeneratorOptions);
  readonly name: string;
  produces<const R extends readonly Requirement[] = []>(
    spec: StateSpec<R>,
    make: (req: GenerateRequest<R[number]["name"]>) => MaybePromise<Answer | AnswerInit>,
  ): this;
  extension(
    spec: ExtensionSpec,
    run: (dataset: Dataset, req: DatasetRequest) => MaybePromise<Answer | AnswerInit>,
  ): this;
  cleanup(type: string, state: string, fn: (dataset: Dataset, req: DatasetRequest) => MaybePromise<void>): this;
  reset(type: string, state: string, fn: (dataset: Dataset, req: DatasetRequest) => MaybePromise<Answer | AnswerInit>): this;
  verify(type: string, state: string, fn: (dataset: Dataset, req: DatasetRequest) => MaybePromise<Verdict>): this;
  dataset<D extends Data>(answer: AnswerInit<D>): Answer<D>;
  /** The capabilities JSON, derived from the declarations. */
  capabilities(): { produces: unknown[]; extensions: unknown[] };
  handle(operation: string, body?: string | Buffer): Promise<Outcome>;
  /** `serve [--host H] [--port N]` or one command-mode call; sets the exit code. */
  main(argv?: string[]): Promise<unknown>;
  runCommand(operation: Operation): Promise<number>;
  server(): Server;
  serve(options?: { host?: string; port?: number }): Promise<Server | number>;
}

// @stockroom/test: a test takes its own datasets from a Stockroom pool through
// the agent of `stockroom run` (docs/plugins/node.md). Node >= 20, no dependency.
//
//   const stockroom = Stockroom.fromEnv({ test: "cart › pays" });
//   const buyer = await stockroom.take("customer/active-with-payment", { where: { country: "DE" } });
//   ...
//   await stockroom.done("passed");
//
// Secret fields (dotted paths in `secretFields`) keep their value for the code
// that uses them, but util.inspect (console.log) of a dataset or of its data
// shows "***", and toJSON() of a dataset masks them.

import { spawn } from "node:child_process";
import { readFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const URL_ENV = "STOCKROOM_AGENT_URL";
export const TOKEN_ENV = "STOCKROOM_AGENT_TOKEN";
export const FILE_ENV = "STOCKROOM_DATASETS_FILE";
export const MASK = "***";
const INSPECT = Symbol.for("nodejs.util.inspect.custom");
export const OUTCOMES = ["passed", "failed", "cancelled", "unused"];

/** Anything that went wrong talking to the agent; the message is one line. */
export class StockroomError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "StockroomError";
  }
}
/** No agent in the environment. */
export class NoAgentError extends StockroomError {
  constructor(message) {
    super(message);
    this.name = "NoAgentError";
  }
}
/** The agent does not answer: the `stockroom run` or `stockroom agent` ended. */
export class AgentGoneError extends StockroomError {
  constructor(message) {
    super(message);
    this.name = "AgentGoneError";
  }
}
/** The pool knows no such type or state; `knownStates` lists what it has. */
export class UnknownStateError extends StockroomError {
  constructor(message, knownStates) {
    super(message);
    this.name = "UnknownStateError";
    this.knownStates = knownStates;
  }
}
/** Not enough stock within the wait; `shortfall` says what was missing. */
export class NoStockError extends StockroomError {
  constructor(message, shortfall) {
    super(message);
    this.name = "NoStockError";
    this.shortfall = shortfall;
  }
}
/** The agent refused the token (401). */
export class UnauthorizedError extends StockroomError {
  constructor(message) {
    super(message);
    this.name = "UnauthorizedError";
  }
}

/** `"customer/active"` → `["customer", "active"]`. */
export function parseStateRef(stateRef) {
  const parts = typeof stateRef === "string" ? stateRef.split("/") : [];
  if (parts.length !== 2 || !parts[0] || !parts[1]) {
    throw new StockroomError(
      `stockroom: a state is written 'type/state' (e.g. 'customer/active'), not ${JSON.stringify(stateRef)}`,
    );
  }
  return parts;
}

function clone(value) {
  return value === undefined ? {} : structuredClone(value);
}

function holderOf(data, path) {
  const parts = path.split(".").filter(Boolean);
  let node = data;
  for (const part of parts.slice(0, -1)) {
    if (node && typeof node === "object" && part in node) node = node[part];
    else return [null, null];
  }
  const last = parts[parts.length - 1];
  return node && typeof node === "object" && last in node ? [node, last] : [null, null];
}

function masked(data, secretFields) {
  const copy = clone(data);
  for (const path of secretFields) {
    const [holder, key] = holderOf(copy, path);
    if (holder) holder[key] = MASK;
  }
  return copy;
}

// Objects on the path to a secret get a non-enumerable inspect hook that
// masks it: console.log(dataset.data) shows "***", JSON.stringify does not.
function guard(data, secretFields) {
  if (!data || typeof data !== "object") return data;
  const byHolder = new Map();
  for (const path of secretFields) {
    const parts = path.split(".").filter(Boolean);
    for (let i = 0; i < parts.length; i++) {
      const [holder] = holderOf(data, parts.slice(0, i + 1).join("."));
      if (!holder) break;
      const rest = parts.slice(i).join(".");
      if (!byHolder.has(holder)) byHolder.set(holder, []);
      byHolder.get(holder).push(rest);
    }
  }
  for (const [holder, paths] of byHolder) {
    Object.defineProperty(holder, INSPECT, {
      enumerable: false,
      value(depth, options, inspect) {
        const view = masked({ ...holder }, paths);
        return inspect ? inspect(view, options) : view;
      },
    });
  }
  return data;
}

function secretTexts(data, secretFields) {
  const found = [];
  for (const path of secretFields) {
    const [holder, key] = holderOf(data, path);
    if (holder && holder[key] !== null && holder[key] !== undefined && holder[key] !== "") {
      found.push(String(holder[key]));
    }
  }
  return found;
}

/** One dataset taken for a test. */
export class Dataset {
  constructor(body) {
    this.id = String(body.id ?? "");
    this.type = String(body.type ?? "");
    this.state = String(body.state ?? "");
    this.name = body.name ?? null;
    this.index = Number(body.index ?? 0);
    this.attributes = { ...(body.attributes ?? {}) };
    this.entities = [...(body.entities ?? [])];
    this.secretFields = [...(body.secret_fields ?? [])];
    this.data = guard(clone(body.data), this.secretFields);
    this.inputs = {};
    for (const [name, input] of Object.entries(body.inputs ?? {})) {
      if (input && typeof input === "object") this.inputs[name] = new Dataset(input);
    }
    Object.defineProperty(this, "secretFields", { enumerable: false });
  }

  /** `type/state`, as the catalog spells it. */
  get stateRef() {
    return `${this.type}/${this.state}`;
  }

  /** The text of every secret value here and in the inputs (to scrub reports). */
  secretValues() {
    const values = secretTexts(this.data, this.secretFields);
    for (const input of Object.values(this.inputs)) values.push(...input.secretValues());
    return values;
  }

  /** `data` with every secret field replaced by "***". */
  maskedData() {
    return masked(this.data, this.secretFields);
  }

  toJSON() {
    return {
      id: this.id,
      type: this.type,
      state: this.state,
      attributes: this.attributes,
      data: this.maskedData(),
      entities: this.entities,
      inputs: this.inputs,
    };
  }

  [INSPECT](depth, options, inspect) {
    const view = { id: this.id, state: this.stateRef, attributes: this.attributes, data: this.maskedData(), entities: this.entities };
    if (Object.keys(this.inputs).length) view.inputs = this.inputs;
    return `Dataset ${inspect ? inspect(view, options) : JSON.stringify(view)}`;
  }

  toString() {
    return `Dataset(${this.id} ${this.stateRef})`;
  }
}

/** Replaces every secret text in `text` by "***". */
// ANSI colour and style sequences (ESC [ … letter).
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

export function scrub(text, secrets) {
  if (typeof text !== "string") return text;
  const ordered = [...new Set(secrets)].filter(Boolean).sort((a, b) => b.length - a.length);
  for (const s of ordered) text = text.split(s).join(MASK);
  // A matcher's diff can highlight parts of a value with colour codes, which
  // split a secret into pieces that no plain search finds; a reporter that
  // drops the colours would then print it whole. When the text without its
  // colours still holds a secret, the colours go and the secret is masked.
  const plain = text.replace(ANSI, "");
  if (plain !== text && ordered.some((s) => plain.includes(s))) {
    text = plain;
    for (const s of ordered) text = text.split(s).join(MASK);
  }
  return text;
}

function knownNames(known) {
  return (known ?? []).map((k) => (typeof k === "string" ? k : `${k.type}/${k.state}`));
}

/** A client of one agent; the token stays out of inspect and JSON. */
export class AgentClient {
  constructor(url, token) {
    this.url = String(url).replace(/\/+$/, "");
    Object.defineProperty(this, "token", { value: token ?? "", enumerable: false });
  }

  static fromEnv(env = process.env) {
    const url = env[URL_ENV];
    if (!url) {
      throw new NoAgentError(
        `stockroom: no agent: ${URL_ENV} is not set; run the tests under \`stockroom run -- <your test command>\`, ` +
          "or start one with `stockroom agent` (see docs/plugins/node.md)",
      );
    }
    return new AgentClient(url, env[TOKEN_ENV]);
  }

  async call(method, path, body, timeoutSeconds = 30) {
    let answer;
    try {
      answer = await fetch(this.url + path, {
        method,
        headers: {
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutSeconds * 1000),
      });
    } catch (e) {
      const why = e?.cause?.code ?? e?.cause?.message ?? e?.name ?? String(e);
      throw new AgentGoneError(
        `stockroom: the agent at ${this.url} does not answer (${why}); ` +
          "the `stockroom run` or `stockroom agent` serving these tests has ended",
      );
    }
    const text = await answer.text();
    let json = {};
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      if (answer.ok) throw new StockroomError(`stockroom: the agent answered ${method} ${path} with non-JSON`);
    }
    if (answer.ok) return json;
    const kind = String(json.type ?? "").split("/").pop();
    const detail = json.detail ?? json.title ?? answer.statusText;
    if (answer.status === 401 || kind === "unauthorized") {
      throw new UnauthorizedError(
        `stockroom: the agent at ${this.url} refused the token (${detail}); ${TOKEN_ENV} must be the one \`stockroom run\` gave`,
      );
    }
    if (kind === "unknown-state") {
      const known = knownNames(json.known_states);
      throw new UnknownStateError(`stockroom: ${detail}; known states: ${known.join(", ") || "(none)"}`, known);
    }
    if (kind === "no-stock") {
      const shortfall = json.shortfall ?? [];
      const parts = shortfall.map((s) => `${s.name}: wanted ${s.wanted}, ready ${s.ready}, generating ${s.generating}`);
      throw new NoStockError(`stockroom: no stock in time (${detail})${parts.length ? ": " + parts.join("; ") : ""}`, shortfall);
    }
    throw new StockroomError(`stockroom: the agent answered ${answer.status}: ${detail}`);
  }

  reserve(items, { waitSeconds = 0 } = {}) {
    const wait = Math.max(0, Math.round(waitSeconds));
    return this.call("POST", "/v1/reserve", { items, ...(wait ? { wait_seconds: wait } : {}) }, wait + 120);
  }

  async take(items, { test, worker, waitSeconds = 60 } = {}) {
    const wait = Math.max(0, Math.round(waitSeconds));
    const body = { items, wait_seconds: wait };
    if (test) body.test = test;
    if (worker) body.worker = worker;
    const answer = await this.call("POST", "/v1/take", body, wait + 30);
    return { takeId: String(answer.take_id ?? ""), datasets: (answer.datasets ?? []).map((d) => new Dataset(d)) };
  }

  done(takeId, outcome, reason) {
    return this.call("POST", `/v1/takes/${encodeURIComponent(takeId)}/done`, { outcome, ...(reason ? { reason } : {}) });
  }

  takes() {
    return this.call("GET", "/v1/takes");
  }

  [INSPECT]() {
    return `AgentClient(${this.url})`;
  }
}

function currentTestName() {
  try {
    return globalThis.expect?.getState?.().currentTestName ?? undefined;
  } catch {
    return undefined;
  }
}

// The test's name from what the runner passes a test function: Vitest's
// context ({ task }), node:test's TestContext (name, fullName).
function nameFromContext(context) {
  if (!context || (typeof context !== "object" && typeof context !== "function")) return undefined;
  const task = context.task;
  if (task && typeof task.name === "string") {
    return task.file?.name ? `${task.file.name}::${task.name}` : task.name;
  }
  if (typeof context.name === "string" && typeof context.diagnostic === "function") {
    return context.fullName ?? context.name;
  }
  return undefined;
}

/** What one test (or one worker) took; `done()` settles all of it. */
export class Stockroom {
  constructor(client, { test, worker, waitSeconds = 60, onTake } = {}) {
    this.client = client;
    this.test = test;
    this.worker = worker;
    this.waitSeconds = waitSeconds;
    this.onTake = onTake;
    this.takes = [];
  }

  /** A Stockroom on the agent of `stockroom run` (STOCKROOM_AGENT_URL / _TOKEN). */
  static fromEnv(options = {}) {
    return new Stockroom(AgentClient.fromEnv(options.env ?? process.env), options);
  }

  /** Every dataset taken so far. */
  get datasets() {
    return this.takes.flatMap((t) => t.datasets);
  }

  /** Secret texts of everything taken (to scrub reports). */
  secretValues() {
    return this.datasets.flatMap((d) => d.secretValues());
  }

  /**
   * Takes `count` datasets in `stateRef` ("type/state") whose attributes match
   * `where` exactly: one Dataset, or an array when count > 1.
   */
  async take(stateRef, { count = 1, where = {}, waitSeconds, name } = {}) {
    const [type, state] = parseStateRef(stateRef);
    if (!Number.isInteger(count) || count < 1) throw new StockroomError(`stockroom: count must be 1 or more, not ${count}`);
    const itemName = name ?? `${type}_${state}`.toLowerCase().replace(/[^a-z0-9_]/g, "_");
    const taken = await this.client.take([{ name: itemName, type, state, where, count }], {
      test: this.test ?? currentTestName(),
      worker: this.worker ?? process.env.JEST_WORKER_ID ?? process.env.VITEST_POOL_ID ?? process.env.TEST_WORKER_INDEX,
      waitSeconds: waitSeconds ?? this.waitSeconds,
    });
    const record = { takeId: taken.takeId, datasets: taken.datasets, outcome: null };
    this.takes.push(record);
    for (const d of taken.datasets) this.onTake?.(d);
    return count === 1 ? taken.datasets[0] : taken.datasets;
  }

  /** Settles every take not done yet with `outcome` (passed, failed, cancelled, unused). */
  async done(outcome = "passed", { reason } = {}) {
    if (!OUTCOMES.includes(outcome)) throw new StockroomError(`stockroom: outcome must be one of ${OUTCOMES.join(", ")}, not ${outcome}`);
    const clean = reason ? scrub(String(reason), this.secretValues()).slice(0, 300) : undefined;
    let first;
    for (const take of this.takes) {
      if (take.outcome) continue;
      try {
        await this.client.done(take.takeId, outcome, clean);
      } catch (e) {
        first ??= e;
      }
      take.outcome = outcome;
    }
    if (first) throw first;
  }

  [INSPECT](depth, options, inspect) {
    return `Stockroom ${inspect ? inspect({ test: this.test, datasets: this.datasets }, options) : this.test}`;
  }
}

/**
 * Replaces secret texts in an error, in place: its message and stack, and the
 * strings assertion libraries keep on it for their reports (Jest's
 * matcherResult, chai's and node:assert's actual/expected, a cause).
 */
export function scrubError(error, secrets, depth = 0) {
  if (!error || typeof error !== "object" || depth > 3) return error;
  for (const key of new Set(["message", "stack", ...Object.keys(error)])) {
    let value;
    try {
      value = error[key];
    } catch {
      continue;
    }
    if (typeof value === "string") {
      const clean = scrub(value, secrets);
      if (clean !== value) {
        try {
          error[key] = clean;
        } catch {
          // a read-only property: leave it
        }
      }
    } else if (value && typeof value === "object") {
      scrubError(value, secrets, depth + 1);
    }
  }
  if (error.cause) scrubError(error.cause, secrets, depth + 1);
  return error;
}

/**
 * Wraps a test function for any runner (Jest, Vitest, Mocha, node:test): it
 * gets a Stockroom, and its takes are done with "passed" when it returns and
 * "failed" when it throws (the error is rethrown, with secret values masked).
 */
export function withStockroom(fn, options = {}) {
  return async function stockroomTest(...args) {
    const stockroom = Stockroom.fromEnv({ ...options, test: options.test ?? nameFromContext(args[0]) });
    let error;
    try {
      return await fn(stockroom, ...args);
    } catch (e) {
      error = e;
      const secrets = stockroom.secretValues();
      if (secrets.length) scrubError(e, secrets);
      throw e;
    } finally {
      const reason = error ? String(error?.message ?? error).split("\n")[0] : undefined;
      await stockroom.done(error ? "failed" : "passed", { reason });
    }
  };
}

/** The job-level datasets file of `stockroom run`: `{ name: Dataset[] }` for any count. */
export async function datasets(path = process.env[FILE_ENV]) {
  if (!path) {
    throw new StockroomError(`stockroom: ${FILE_ENV} is not set; run the tests under \`stockroom run --manifest stockroom.toml -- ...\``);
  }
  let body;
  try {
    body = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new StockroomError(`stockroom: cannot read the datasets file ${path}: ${e.message}`);
  }
  const out = {};
  for (const [name, value] of Object.entries(body.datasets ?? {})) {
    const items = Array.isArray(value) ? value : [value];
    out[name] = items.map((d, index) => new Dataset({ ...d, name, index }));
  }
  Object.defineProperties(out, {
    leaseId: { value: body.lease_id, enumerable: false },
    shard: { value: body.shard, enumerable: false },
    expiresAt: { value: body.expires_at, enumerable: false },
  });
  return out;
}

/**
 * Starts `stockroom agent` (found on PATH, or `binary`) for a session that has
 * no agent; the pool comes from STOCKROOM_POOL and STOCKROOM_TOKEN. Resolves to
 * `{ url, token, stop() }`; stop() closes its stdin, after which it settles
 * what is left and exits.
 */
export async function startAgent({ binary = "stockroom", readyTimeoutSeconds = 60 } = {}) {
  const work = await mkdtemp(join(tmpdir(), "stockroom-agent-"));
  const ready = join(work, "agent.json");
  const child = spawn(binary, ["agent", "--ready-file", ready], { stdio: ["pipe", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (chunk) => {
    log = (log + chunk).slice(-4000);
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  const spawnError = new Promise((resolve) => child.once("error", resolve));
  const deadline = Date.now() + readyTimeoutSeconds * 1000;
  for (;;) {
    try {
      const info = JSON.parse(await readFile(ready, "utf8"));
      return {
        url: info.url,
        token: info.token,
        async stop() {
          child.stdin.end();
          const timer = setTimeout(() => child.kill("SIGTERM"), 60_000);
          const code = await exited;
          clearTimeout(timer);
          await rm(work, { recursive: true, force: true });
          return code;
        },
      };
    } catch {
      // not written (completely) yet
    }
    const early = await Promise.race([exited, spawnError, new Promise((r) => setTimeout(() => r(undefined), 20))]);
    if (early !== undefined) {
      await rm(work, { recursive: true, force: true });
      throw new StockroomError(`stockroom: \`${binary} agent\` ended before it was ready (${early?.message ?? early}): ${log.trim()}`);
    }
    if (Date.now() > deadline) {
      child.kill("SIGTERM");
      throw new StockroomError(`stockroom: \`${binary} agent\` was not ready within ${readyTimeoutSeconds} s: ${log.trim()}`);
    }
  }
}

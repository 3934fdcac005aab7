// Stockroom generator SDK for Node (docs/generators.md): declare the states your
// team can make, write one function each, and serve them to the pool over HTTP
// (`node gen.mjs serve --port 9001`) or as a command (`node gen.mjs generate`,
// the request on stdin). No dependencies beyond Node itself.

import http from "node:http";
import path from "node:path";

/** The largest answer the pool accepts (its MAX_ANSWER_BYTES). */
export const MAX_ANSWER_BYTES = 16 * 1024 * 1024;
/** The largest request accepted over HTTP (a composed request carries its inputs). */
export const MAX_REQUEST_BYTES = 64 * 1024 * 1024;
export const OPERATIONS = ["capabilities", "generate", "extend", "cleanup", "reset", "verify"];
const LIFECYCLE = ["cleanup", "reset", "verify"];

/** Command-mode exit codes (sysexits.h); the pool treats any non-zero code as a failed call. */
export const EXIT = Object.freeze({ ok: 0, usage: 64, refused: 65, failed: 70, io: 74, config: 78 });
const EXIT_BY_KIND = { ok: EXIT.ok, refused: EXIT.refused, failed: EXIT.failed, unknown: EXIT.usage };
const STATUS_BY_KIND = { ok: 200, refused: 422, failed: 500, unknown: 404 };
const TITLE_BY_KIND = { refused: "request refused", failed: "generator failed", unknown: "not found" };
const REDACTED = "[redacted]";

/** Throw it to refuse a request this generator cannot serve: HTTP 422 / exit 65, not retried. */
export class Refuse extends Error {
  constructor(message) {
    super(message);
    this.name = "Refuse";
  }
}

/** The generator's own declarations are inconsistent. */
export class DeclarationError extends Error {
  constructor(message) {
    super(message);
    this.name = "DeclarationError";
  }
}

/** The generator's answer breaks its declarations. */
class Broken extends Error {}

/** What a generate, extend or reset function returns; build it with `gen.dataset({...})`. */
export class Answer {
  constructor({ data, entities, attributes, secretFields } = {}) {
    this.data = data;
    this.entities = entities === undefined ? undefined : [...entities];
    this.attributes = attributes === undefined ? undefined : { ...attributes };
    this.secretFields = secretFields === undefined ? undefined : [...secretFields];
  }
  toJSON() {
    return { data: redacted(this.data, this.secretFields ?? []), entities: this.entities };
  }
}

/** One dataset as the pool sends it. Secret values never show in inspect() or JSON.stringify(). */
export class Dataset {
  constructor({ id = "", type, state, attributes = {}, data = {}, secretFields = [], entities = [], inputs = {} }) {
    Object.assign(this, { id, type, state, attributes, data, secretFields, entities, inputs });
  }
  static fromWire(value, where = "dataset") {
    if (!isObject(value)) throw new Refuse(`${where} must be a JSON object`);
    for (const key of ["type", "state"]) {
      if (typeof value[key] !== "string") throw new Refuse(`${where} has no \`${key}\``);
    }
    const inputs = value.inputs ?? {};
    if (!isObject(inputs)) throw new Refuse(`${where}.inputs must be an object`);
    return new Dataset({
      id: String(value.id ?? ""),
      type: value.type,
      state: value.state,
      attributes: wireAttributes(value.attributes, `${where}.attributes`),
      data: value.data ?? {},
      secretFields: strings(value.secret_fields, `${where}.secret_fields`),
      entities: strings(value.entities, `${where}.entities`),
      inputs: Object.fromEntries(
        Object.entries(inputs).map(([name, v]) => [name, Dataset.fromWire(v, `${where}.inputs.${name}`)]),
      ),
    });
  }
  /** The protocol's shape, secrets included (for sending on, never for logging). */
  toWire() {
    const out = {
      id: this.id, type: this.type, state: this.state, attributes: { ...this.attributes }, data: this.data,
      secret_fields: [...this.secretFields], entities: [...this.entities],
    };
    if (Object.keys(this.inputs).length) {
      out.inputs = Object.fromEntries(Object.entries(this.inputs).map(([k, d]) => [k, d.toWire()]));
    }
    return out;
  }
  toJSON() {
    return { ...this, data: redacted(this.data, this.secretFields) };
  }
  [Symbol.for("nodejs.util.inspect.custom")]() {
    return `Dataset(${this.id} ${this.type}/${this.state} ${JSON.stringify(this.toJSON().data)} ${JSON.stringify(this.entities)})`;
  }
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function strings(value, where) {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw new Refuse(`${where} must be a list of strings`);
  }
  return value;
}

function wireAttributes(value, where) {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw new Refuse(`${where} must be an object`);
  const out = {};
  for (const [name, v] of Object.entries(value)) {
    if (typeof v === "boolean" || typeof v === "number") out[name] = String(v);
    else if (typeof v === "string") out[name] = v;
    else throw new Refuse(`${where}.${name} must be a string, number or boolean`);
  }
  return out;
}

function redacted(data, secretFields) {
  if (!isObject(data) || !secretFields.length) return data;
  const copy = structuredClone(data);
  for (const field of secretFields) {
    const parts = field.split(".");
    let cur = copy;
    for (let i = 0; i < parts.length; i++) {
      if (!isObject(cur) || !(parts[i] in cur)) break;
      if (i === parts.length - 1) cur[parts[i]] = REDACTED;
      else cur = cur[parts[i]];
    }
  }
  return copy;
}

// -- the checks the pool makes (docs/generators.md, "What is checked"); problems
// -- name fields and attributes, never their values.

const MISSING = Symbol("missing");

function lookupPath(data, field) {
  let cur = data;
  for (const key of field.split(".")) {
    if (!isObject(cur) || !Object.hasOwn(cur, key)) return MISSING;
    cur = cur[key];
  }
  return cur;
}

function jsonKind(v) {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "an array";
  return { boolean: "a boolean", number: "a number", string: "a string", function: "a function" }[typeof v] ?? "an object";
}

function checkData(data, promised, secretFields, entities, allowedSecrets) {
  if (!isObject(data)) return [`data must be a JSON object, found ${jsonKind(data)}`];
  const problems = [];
  for (const field of promised) {
    const v = lookupPath(data, field);
    if (v === MISSING) problems.push(`promised field \`${field}\` is missing from data`);
    else if (v === null || v === undefined) problems.push(`promised field \`${field}\` is null`);
  }
  for (const secret of secretFields) {
    if (lookupPath(data, secret) === MISSING) problems.push(`secret field \`${secret}\` is not in data`);
    else if (!allowedSecrets.has(secret)) problems.push(`secret field \`${secret}\` is not declared in secretFields`);
  }
  const seen = new Set();
  entities.forEach((entity, i) => {
    const at = typeof entity === "string" ? entity.indexOf(":") : -1;
    if (at <= 0 || at === entity.length - 1) problems.push(`entity ${i + 1} must look like \`kind:id\`, e.g. \`customer:C1042\``);
    if (seen.has(entity)) problems.push("an entity is listed twice");
    seen.add(entity);
  });
  return problems;
}

function checkAttributes(declared, requested, answered, stateName) {
  const problems = [];
  for (const [name, value] of Object.entries(answered)) {
    if (!Object.hasOwn(declared, name)) problems.push(`attribute \`${name}\` is not declared by ${stateName}`);
    else if (declared[name].length && !declared[name].includes(value)) {
      problems.push(`attribute \`${name}\` has a value outside the declared ones (${declared[name].join(", ")})`);
    }
  }
  for (const [name, wanted] of Object.entries(requested)) {
    if (!Object.hasOwn(answered, name)) problems.push(`requested attribute \`${name}\` is not echoed in the answer's attributes`);
    else if (answered[name] !== wanted) problems.push(`attribute \`${name}\` differs from the requested \`${name} = ${wanted}\``);
  }
  return problems;
}

function names(value, what) {
  if (typeof value === "string") throw new DeclarationError(`${what} must be a list of field names, not one string`);
  const list = [...(value ?? [])];
  if (!list.every((v) => typeof v === "string" && v)) throw new DeclarationError(`${what} must be a list of non-empty strings`);
  return list;
}

function nonEmpty(v, what) {
  if (typeof v !== "string" || !v || v.includes("/")) throw new DeclarationError(`${what} must be a non-empty string without \`/\``);
  return v;
}

function brokenIf(problems) {
  if (problems.length) throw new Broken(`the answer breaks the declaration: ${problems.join("; ")}`);
}

/**
 * A generator: declare what it makes, then `main()` serves it over HTTP or
 * runs one command-mode call, from the same code.
 */
export class Generator {
  constructor({ name, maxAnswerBytes = MAX_ANSWER_BYTES, log } = {}) {
    this.name = name ?? (path.basename(process.argv[1] ?? "generator").replace(/\.[cm]?[jt]s$/, "") || "generator");
    this.maxAnswerBytes = maxAnswerBytes;
    this.log = log ?? ((line) => process.stderr.write(`${this.name}: ${line}\n`));
    this.states = new Map();
    this.extensions = new Map();
    this.lifecycle = new Map();
  }

  /** Declares that `make(req)` produces datasets of `spec.type/spec.state`. */
  produces(spec, make) {
    const type = nonEmpty(spec?.type, "produces: type");
    const state = nonEmpty(spec?.state, "produces: state");
    const stateName = `${type}/${state}`;
    if (this.states.has(stateName)) throw new DeclarationError(`${stateName} is declared twice`);
    if (typeof make !== "function") throw new DeclarationError(`${stateName}: produces needs a function`);
    const attributes = {};
    for (const [attr, values] of Object.entries(spec.attributes ?? {})) {
      if (!Array.isArray(values)) throw new DeclarationError(`${stateName}: attribute \`${attr}\` takes a list of allowed values (empty allows any)`);
      attributes[attr] = values.map(String);
    }
    const requires = (spec.requires ?? []).map((r) => {
      if (!isObject(r) || ![r.name, r.type, r.state].every((v) => typeof v === "string" && v)) {
        throw new DeclarationError(`${stateName}: requires takes {name, type, state} objects`);
      }
      return { name: r.name, type: r.type, state: r.state };
    });
    if (new Set(requires.map((r) => r.name)).size !== requires.length) throw new DeclarationError(`${stateName}: two requirements share a name`);
    this.states.set(stateName, {
      type, state, stateName, description: spec.description, attributes,
      fields: names(spec.fields, `${stateName}: fields`),
      secretFields: names(spec.secretFields, `${stateName}: secretFields`),
      requires, reusable: Boolean(spec.reusable), make, lifecycle: {},
    });
    return this;
  }

  /** Declares an extension; `run(dataset, req)` answers data that replaces the old data. */
  extension(spec, run) {
    const name = spec?.name;
    if (typeof name !== "string" || !name) throw new DeclarationError("an extension's name must be a non-empty string");
    const key = `${spec.type}\u0000${name}`;
    if (this.extensions.has(key)) throw new DeclarationError(`extension "${name}" of ${spec.type} is declared twice`);
    if (typeof run !== "function") throw new DeclarationError(`extension ${name} needs a function`);
    this.extensions.set(key, {
      name, type: nonEmpty(spec.type, `extension ${name}: type`), from: nonEmpty(spec.from, `extension ${name}: from`),
      to: nonEmpty(spec.to, `extension ${name}: to`), fields: names(spec.fields, `extension ${name}: fields`),
      description: spec.description, run,
    });
    return this;
  }

  #lifecycleCall(operation, type, state, fn) {
    const key = `${operation} ${type}/${state}`;
    if (this.lifecycle.has(key)) throw new DeclarationError(`${operation} for ${type}/${state} is declared twice`);
    if (typeof fn !== "function") throw new DeclarationError(`${key} needs a function`);
    this.lifecycle.set(key, { operation, stateName: `${type}/${state}`, fn });
    return this;
  }

  /** `fn(dataset, req)` removes a consumed or discarded dataset from the system under test. */
  cleanup(type, state, fn) {
    return this.#lifecycleCall("cleanup", type, state, fn);
  }

  /** `fn(dataset, req)` brings a used dataset back to its state's start; returns `gen.dataset(...)`. */
  reset(type, state, fn) {
    return this.#lifecycleCall("reset", type, state, fn);
  }

  /** `fn(dataset, req)` says whether it still holds: true, false or `{ valid: false, reason }`. */
  verify(type, state, fn) {
    return this.#lifecycleCall("verify", type, state, fn);
  }

  /** The answer of a generate, extend or reset function. */
  dataset(answer) {
    return new Answer(answer);
  }

  /** The capabilities JSON, derived from the declarations. */
  capabilities() {
    for (const { operation, stateName, fn } of this.lifecycle.values()) {
      const spec = this.states.get(stateName);
      if (!spec) {
        throw new DeclarationError(`${operation} is declared for ${stateName}, which this generator does not produce; declare it with produces() first`);
      }
      spec.lifecycle[operation] = fn;
    }
    return {
      produces: [...this.states.values()].map((s) => {
        const out = { type: s.type, state: s.state };
        if (s.description) out.description = s.description;
        Object.assign(out, {
          attributes: s.attributes, fields: s.fields, secret_fields: s.secretFields, requires: s.requires, reusable: s.reusable,
        });
        const lifecycle = LIFECYCLE.filter((op) => s.lifecycle[op]);
        if (lifecycle.length) out.lifecycle = lifecycle;
        return out;
      }),
      extensions: [...this.extensions.values()].map((e) => {
        const out = { name: e.name, type: e.type, from: e.from, to: e.to, fields: e.fields };
        if (e.description) out.description = e.description;
        return out;
      }),
    };
  }

  /**
   * Runs one call. `body` is the raw request (undefined for capabilities).
   * Never throws: resolves to `{ kind, body?, message? }` with kind ok,
   * refused (the request is wrong), failed (the generator is wrong) or unknown.
   */
  async handle(operation, body) {
    const ctx = { what: operation };
    let outcome;
    try {
      if (!OPERATIONS.includes(operation)) {
        return { kind: "unknown", message: `unknown operation "${operation}"; expected one of ${OPERATIONS.join(", ")}` };
      }
      if (operation === "capabilities") return this.#encode(this.capabilities());
      let request;
      try {
        request = JSON.parse(Buffer.isBuffer(body) ? body.toString("utf8") : (body ?? ""));
      } catch (e) {
        throw new Refuse(`the request is not valid JSON (${e.message})`);
      }
      if (!isObject(request)) throw new Refuse("the request must be a JSON object");
      this.capabilities();
      const requestId = request.request_id ?? null;
      if (requestId !== null && typeof requestId !== "string") throw new Refuse("request_id must be a string");
      const handler = { generate: this.#generate, extend: this.#extend, cleanup: this.#cleanup, reset: this.#reset, verify: this.#verify }[operation];
      outcome = this.#encode(await handler.call(this, request, requestId, ctx));
    } catch (e) {
      if (e instanceof Refuse) outcome = { kind: "refused", message: `${ctx.what}: ${e.message}` };
      else if (e instanceof Broken || e instanceof DeclarationError) outcome = { kind: "failed", message: `${ctx.what}: ${e.message}` };
      else {
        // The domain team's function threw: the stack goes to the log, the cause to the pool.
        this.log(`${ctx.what} threw\n${e?.stack ?? String(e)}`);
        const cause = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        outcome = { kind: "failed", message: `${ctx.what} threw ${cause}` };
      }
    }
    if (outcome.kind !== "ok") this.log(outcome.message);
    return outcome;
  }

  #encode(payload) {
    let text;
    try {
      text = JSON.stringify(payload);
    } catch (e) {
      throw new Broken(`the answer cannot be sent as JSON: ${e.message}`);
    }
    const size = Buffer.byteLength(text);
    if (size > this.maxAnswerBytes) {
      throw new Broken(`the answer is ${size} bytes, more than the ${this.maxAnswerBytes} the pool accepts; make the dataset smaller (keep large files outside data)`);
    }
    return { kind: "ok", body: text };
  }

  async #generate(request, requestId, ctx) {
    const stateName = `${request.type}/${request.state}`;
    const spec = this.states.get(stateName);
    if (!spec) {
      ctx.what = `cannot generate ${stateName}`;
      throw new Refuse(`not declared; this generator produces ${[...this.states.keys()].sort().join(", ") || "no states"}`);
    }
    ctx.what = `generate ${stateName}`;
    const attributes = wireAttributes(request.attributes, "attributes");
    for (const [attr, value] of Object.entries(attributes)) {
      if (!Object.hasOwn(spec.attributes, attr)) throw new Refuse(`attribute \`${attr}\` is not declared by ${stateName}`);
      const allowed = spec.attributes[attr];
      if (allowed.length && !allowed.includes(value)) throw new Refuse(`attribute \`${attr}\` must be one of ${allowed.join(", ")}`);
    }
    const rawInputs = request.inputs ?? {};
    if (!isObject(rawInputs)) throw new Refuse("inputs must be an object");
    const inputs = {};
    for (const r of spec.requires) {
      if (rawInputs[r.name] === undefined || rawInputs[r.name] === null) {
        throw new Refuse(`input \`${r.name}\` (${r.type}/${r.state}) is missing from the request`);
      }
      const ds = Dataset.fromWire(rawInputs[r.name], `inputs.${r.name}`);
      if (ds.type !== r.type || ds.state !== r.state) {
        throw new Refuse(`input \`${r.name}\` must be ${r.type}/${r.state}, got ${ds.type}/${ds.state}`);
      }
      inputs[r.name] = ds;
    }
    const req = { operation: "generate", requestId, type: request.type, state: request.state, attributes, inputs };
    const answer = toAnswer(await spec.make(req));
    let answered = { ...attributes };
    if (answer.attributes !== undefined) {
      try {
        answered = { ...answered, ...wireAttributes(answer.attributes, "the answer's attributes") };
      } catch (e) {
        throw new Broken(e.message);
      }
    }
    const secrets = secretsOf(answer, spec.secretFields, []);
    const entities = answer.entities ?? [];
    brokenIf([
      ...checkData(answer.data, spec.fields, secrets, entities, new Set(spec.secretFields)),
      ...checkAttributes(spec.attributes, attributes, answered, stateName),
    ]);
    return { attributes: answered, data: answer.data, secret_fields: secrets, entities };
  }

  async #extend(request, requestId, ctx) {
    const extName = request.extension;
    ctx.what = `extend with "${extName}"`;
    const dataset = Dataset.fromWire(request.dataset);
    ctx.what = `extend ${dataset.type}/${dataset.state} with "${extName}"`;
    const ext = this.extensions.get(`${dataset.type}\u0000${extName}`);
    if (!ext) {
      const offered = [...this.extensions.values()].map((e) => `${e.name} (${e.type})`);
      throw new Refuse(`extension "${extName}" of ${dataset.type} is not declared; offered: ${offered.join(", ") || "none"}`);
    }
    if (dataset.state !== ext.from) throw new Refuse(`the extension starts from ${ext.type}/${ext.from}`);
    const req = { operation: "extend", requestId, type: dataset.type, state: dataset.state, attributes: dataset.attributes, inputs: {}, extension: extName, dataset };
    const answer = toAnswer(await ext.run(dataset, req));
    const promised = [...ext.fields];
    const allowed = new Set(dataset.secretFields);
    for (const stateName of [`${ext.type}/${ext.from}`, `${ext.type}/${ext.to}`]) {
      const spec = this.states.get(stateName);
      if (!spec) continue;
      for (const f of spec.fields) if (!promised.includes(f)) promised.push(f);
      for (const s of spec.secretFields) allowed.add(s);
    }
    return dataAnswer(answer, dataset, promised, allowed);
  }

  async #lifecycleRun(operation, request, requestId, ctx) {
    const dataset = Dataset.fromWire(request.dataset);
    const stateName = `${dataset.type}/${dataset.state}`;
    ctx.what = `${operation} ${stateName}`;
    const spec = this.states.get(stateName);
    const fn = spec?.lifecycle[operation];
    if (!fn) {
      const declared = [...this.lifecycle.values()].filter((l) => l.operation === operation).map((l) => l.stateName);
      throw new Refuse(`${operation} is not declared for ${stateName}; declared for: ${declared.join(", ") || "no state"}`);
    }
    const req = { operation, requestId, type: dataset.type, state: dataset.state, attributes: dataset.attributes, inputs: {}, dataset };
    return { spec, dataset, result: await fn(dataset, req) };
  }

  async #cleanup(request, requestId, ctx) {
    const { result } = await this.#lifecycleRun("cleanup", request, requestId, ctx);
    if (result !== undefined) throw new Broken("the cleanup function must return nothing (throw to report a failure)");
    return {};
  }

  async #reset(request, requestId, ctx) {
    const { spec, dataset, result } = await this.#lifecycleRun("reset", request, requestId, ctx);
    return dataAnswer(toAnswer(result), dataset, spec.fields, new Set(spec.secretFields));
  }

  async #verify(request, requestId, ctx) {
    const { result } = await this.#lifecycleRun("verify", request, requestId, ctx);
    let valid = result;
    let reason = null;
    if (isObject(result)) ({ valid, reason = null } = result);
    if (typeof valid !== "boolean" || (reason !== null && typeof reason !== "string")) {
      throw new Broken("the verify function must return true, false or { valid: false, reason: '...' }");
    }
    if (!valid && !reason) reason = "the generator found it no longer holds";
    return { valid, reason };
  }

  /**
   * `serve [--host H] [--port N]`, or one of capabilities, generate, extend,
   * cleanup, reset, verify with the request on stdin. Sets the exit code.
   */
  async main(argv = process.argv.slice(2)) {
    const usage = `usage: ${this.name} serve [--host HOST] [--port PORT]      HTTP service (default 127.0.0.1, a free port)
       ${this.name} capabilities|generate|extend|cleanup|reset|verify
                                   one call: the request on stdin, the answer on stdout\n`;
    const [operation, ...rest] = argv;
    if (!operation || ["-h", "--help", "help"].includes(operation)) {
      process.stderr.write(usage);
      return exit(operation ? EXIT.ok : EXIT.usage);
    }
    try {
      this.capabilities();
    } catch (e) {
      this.log(e.message);
      return exit(EXIT.config);
    }
    if (operation === "serve") {
      let flags;
      try {
        flags = serveFlags(rest);
      } catch (e) {
        process.stderr.write(`${this.name}: ${e.message}\n${usage}`);
        return exit(EXIT.usage);
      }
      return this.serve(flags);
    }
    if (!OPERATIONS.includes(operation) || rest.length) {
      process.stderr.write(`${this.name}: unknown operation "${argv.join(" ")}"\n${usage}`);
      return exit(EXIT.usage);
    }
    // Timers or sockets the functions left open must not keep the call alive.
    process.exit(await this.runCommand(operation));
  }

  /**
   * One command-mode call: reads stdin, answers on stdout, returns the exit
   * code. While the domain team's function runs, writes to process.stdout
   * (console.log) go to stderr, so they cannot corrupt the answer.
   */
  async runCommand(operation) {
    const body = operation === "capabilities" ? undefined : await readAll(process.stdin);
    const write = process.stdout.write;
    process.stdout.write = process.stderr.write.bind(process.stderr);
    let outcome;
    try {
      outcome = await this.handle(operation, body);
    } finally {
      process.stdout.write = write;
    }
    if (outcome.kind === "ok") await new Promise((resolve) => process.stdout.write(`${outcome.body}\n`, resolve));
    return EXIT_BY_KIND[outcome.kind];
  }

  /** A `node:http` server for this generator, not yet listening. */
  server() {
    return http.createServer((req, res) => this.#route(req, res));
  }

  /** Listens and serves until SIGTERM or SIGINT; prints `listening on URL` on stdout. */
  async serve({ host = "127.0.0.1", port = 0 } = {}) {
    const server = this.server();
    try {
      await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, resolve);
      });
    } catch (e) {
      this.log(`cannot listen on ${host}:${port}: ${e.message}`);
      return exit(EXIT.io);
    }
    const { address, port: bound } = server.address();
    const stop = () => {
      server.close(() => exit(EXIT.ok));
      server.closeAllConnections();
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    process.stdout.write(`listening on http://${address}:${bound}\n`);
    this.log(`serving ${this.states.size} states and ${this.extensions.size} extensions on http://${address}:${bound}`);
    return server;
  }

  async #route(req, res) {
    const route = (req.url ?? "/").split("?")[0].replace(/^\/+|\/+$/g, "");
    const send = (status, type, text) => {
      res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(text) });
      res.end(text);
    };
    const problem = (status, title, detail) =>
      send(status, "application/problem+json", JSON.stringify({ type: "about:blank", title, status, detail }));
    const answer = (outcome) =>
      outcome.kind === "ok"
        ? send(200, "application/json", outcome.body)
        : problem(STATUS_BY_KIND[outcome.kind], TITLE_BY_KIND[outcome.kind], outcome.message);
    try {
      if (req.method === "GET" && route === "capabilities") return answer(await this.handle("capabilities"));
      if (req.method === "GET" && route === "healthz") return send(200, "application/json", '{"status":"ok"}');
      if (req.method !== "POST" || route === "capabilities" || !OPERATIONS.includes(route)) {
        req.resume();
        return problem(404, "not found", `no ${req.method} /${route}; GET /capabilities or POST /generate, /extend, /cleanup, /reset, /verify`);
      }
      const body = await readAll(req, MAX_REQUEST_BYTES);
      if (body === null) {
        res.setHeader("Connection", "close");
        return problem(413, "request too large", `the request is larger than ${MAX_REQUEST_BYTES} bytes`);
      }
      return answer(await this.handle(route, body));
    } catch (e) {
      this.log(`answering ${req.method} /${route} failed: ${e.message}`);
      if (!res.headersSent) problem(500, "generator failed", "the request could not be read");
    }
  }
}

function toAnswer(result) {
  if (result instanceof Answer) return result;
  if (isObject(result) && "data" in result) return new Answer(result);
  throw new Broken(`the function must return gen.dataset({ data, entities }), got ${jsonKind(result)}`);
}

/** The answer's secret fields: those it names, plus every declared or inherited one present in data. */
function secretsOf(answer, declared, inherited) {
  const named = [...(answer.secretFields ?? [])];
  for (const f of [...declared, ...inherited]) {
    if (!named.includes(f) && lookupPath(answer.data, f) !== MISSING) named.push(f);
  }
  return named;
}

function dataAnswer(answer, dataset, promised, allowedSecrets) {
  const secrets = secretsOf(answer, allowedSecrets, dataset.secretFields);
  const entities = answer.entities ?? [...dataset.entities];
  brokenIf(checkData(answer.data, promised, secrets, entities, allowedSecrets));
  return { data: answer.data, secret_fields: secrets, entities };
}

function serveFlags(args) {
  const flags = { host: "127.0.0.1", port: 0 };
  for (let i = 0; i < args.length; i += 2) {
    const [flag, value] = [args[i], args[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--port") {
      if (!/^\d+$/.test(value) || Number(value) > 65535) throw new Error(`--port takes a number from 0 to 65535, not "${value}"`);
      flags.port = Number(value);
    } else if (flag === "--host") flags.host = value;
    else throw new Error(`unknown flag "${flag}"`);
  }
  return flags;
}

/** Reads a stream to its end; null once more than `limit` bytes arrived. */
async function readAll(stream, limit = Infinity) {
  const chunks = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.length;
    // Past the limit the rest is drained, not kept, so the answer can still be sent.
    if (size <= limit) chunks.push(chunk);
  }
  return size > limit ? null : Buffer.concat(chunks);
}

function exit(code) {
  process.exitCode = code;
  return code;
}

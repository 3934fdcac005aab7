// The Node generator SDK, run for real: sample-gen.mjs as a command (one
// child process per call) and as an HTTP service on a free loopback port,
// checked against the protocol of docs/generators.md. Run: node --test test/
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { inspect } from "node:util";

import { Dataset, DeclarationError, Generator } from "../index.js";

const SAMPLE = fileURLToPath(new URL("../fixtures/sample-gen.mjs", import.meta.url));
const PATIENCE = 30_000;

function run(args, request, env = {}) {
  const done = spawnSync(process.execPath, [SAMPLE, ...[].concat(args)], {
    input: request === undefined ? "" : JSON.stringify(request),
    timeout: PATIENCE, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024,
  });
  const out = done.stdout.toString();
  return {
    code: done.status, out, err: done.stderr.toString(),
    answer: done.status === 0 && out.trim() ? JSON.parse(out) : undefined,
  };
}

const dataset = (type, state, data, more = {}) => ({
  id: "ds_1", type, state, attributes: {}, data, secret_fields: [], entities: [], ...more,
});
const CUSTOMER = dataset("customer", "active", { customer_id: "C1", email: "c1@x.test", password: "hunter2", card: { last4: "4242" } },
  { secret_fields: ["password"], entities: ["customer:C1"] });

describe("command mode", () => {
  test("capabilities are derived from the declarations", () => {
    const { code, answer, err } = run("capabilities");
    assert.equal(code, 0, err);
    const states = Object.fromEntries(answer.produces.map((p) => [`${p.type}/${p.state}`, p]));
    assert.deepEqual(states["customer/active"], {
      type: "customer", state: "active", description: "verified customer", attributes: { country: ["DE", "US"], tier: [] },
      fields: ["customer_id", "email", "card.last4"], secret_fields: ["password"], requires: [], reusable: true,
      lifecycle: ["cleanup", "reset", "verify"],
    });
    assert.deepEqual(states["order/placed"].requires, [{ name: "buyer", type: "customer", state: "active-with-payment" }]);
    assert.equal(states["order/placed"].lifecycle, undefined);
    assert.deepEqual(answer.extensions, [{ name: "add-card", type: "customer", from: "active", to: "active-with-payment", fields: ["payment_method_id"] }]);
  });

  test("generate answers on a clean stdout and fills in the defaults", () => {
    const { code, answer, out, err } = run("generate", { type: "customer", state: "active", attributes: { country: "DE", tier: "gold" }, request_id: "req-1234" });
    assert.equal(code, 0, err);
    assert.equal(out.split("\n").length, 2, out);
    assert.match(err, /a stray console.log that must not reach the answer/);
    assert.equal(answer.data.customer_id, "C1234", "requestId reaches the function");
    assert.deepEqual(answer.attributes, { country: "DE", tier: "gold" });
    assert.deepEqual(answer.secret_fields, ["password"]);
    assert.deepEqual(answer.entities, ["customer:C1234"]);
  });

  test("a missing promised field is an error naming the state, and nothing is sent", () => {
    const { code, out, err } = run("generate", { type: "x", state: "missing-field" });
    assert.equal(code, 70);
    assert.equal(out, "");
    assert.match(err, /sample: generate x\/missing-field: the answer breaks the declaration: promised field `b\.c` is missing from data/);
  });

  test("an exception is a protocol error with the stack on stderr", () => {
    const { code, out, err } = run("generate", { type: "x", state: "throws" });
    assert.equal(code, 70);
    assert.equal(out, "");
    assert.match(err, /at Object\.make .*sample-gen\.mjs/);
    assert.equal(err.trim().split("\n").at(-1), "sample: generate x/throws threw TypeError: no-such-key");
  });

  test("an undeclared state is refused by name", () => {
    const { code, out, err } = run("generate", { type: "customer", state: "gone" });
    assert.equal(code, 65);
    assert.equal(out, "");
    assert.match(err, /cannot generate customer\/gone: not declared; this generator produces customer\/active, order\/placed/);
  });

  test("undeclared or disallowed attributes are refused", () => {
    let r = run("generate", { type: "customer", state: "active", attributes: { country: "FR" } });
    assert.equal(r.code, 65);
    assert.match(r.err, /attribute `country` must be one of DE, US/);
    r = run("generate", { type: "customer", state: "active", attributes: { colour: "red" } });
    assert.equal(r.code, 65);
    assert.match(r.err, /attribute `colour` is not declared by customer\/active/);
  });

  test("a huge answer is refused before sending", () => {
    let r = run("generate", { type: "x", state: "huge" }, { SAMPLE_MAX_ANSWER: "1000000" });
    assert.equal(r.code, 70);
    assert.equal(r.out, "");
    assert.match(r.err, /generate x\/huge: the answer is 20000\d\d bytes, more than the 1000000 the pool accepts/);
    r = run("generate", { type: "x", state: "huge" });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.answer.data.blob.length, 2_000_000);
  });

  test("undeclared secrets, bad entities and wrong returns are caught", () => {
    let r = run("generate", { type: "x", state: "undeclared-secret" });
    assert.equal(r.code, 70);
    assert.match(r.err, /secret field `token` is not declared in secretFields/);
    r = run("generate", { type: "x", state: "bad-entities" });
    assert.equal(r.code, 70);
    assert.match(r.err, /entity 1 must look like `kind:id`/);
    assert.match(r.err, /an entity is listed twice/);
    r = run("generate", { type: "x", state: "wrong-return" });
    assert.equal(r.code, 70);
    assert.match(r.err, /generate x\/wrong-return: the function must return gen\.dataset\(/);
  });

  test("a timer left running does not keep the call alive", () => {
    const r = run("generate", { type: "x", state: "leaves-a-timer" });
    assert.equal(r.code, 0, r.err);
  });

  test("requires supplies typed inputs and refuses missing or wrong ones", () => {
    const buyer = dataset("customer", "active-with-payment", { customer_id: "C7" }, { entities: ["customer:C7"] });
    let r = run("generate", { type: "order", state: "placed", inputs: { buyer } });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.answer.data.customer_id, "C7");
    assert.equal(r.answer.data.buyer_type, "Dataset");
    r = run("generate", { type: "order", state: "placed" });
    assert.equal(r.code, 65);
    assert.match(r.err, /generate order\/placed: input `buyer` \(customer\/active-with-payment\) is missing/);
    r = run("generate", { type: "order", state: "placed", inputs: { buyer: dataset("customer", "active", {}) } });
    assert.equal(r.code, 65);
    assert.match(r.err, /input `buyer` must be customer\/active-with-payment, got customer\/active/);
  });

  test("extend sends everything back and keeps entities and secrets", () => {
    const r = run("extend", { extension: "add-card", dataset: CUSTOMER, request_id: "r" });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.answer.data.payment_method_id, "pm_1");
    assert.equal(r.answer.data.email, "c1@x.test");
    assert.deepEqual(r.answer.entities, ["customer:C1"]);
    assert.deepEqual(r.answer.secret_fields, ["password"]);
  });

  test("extend refusals and broken answers", () => {
    let r = run("extend", { extension: "fly", dataset: CUSTOMER });
    assert.equal(r.code, 65);
    assert.match(r.err, /extension "fly" of customer is not declared; offered: add-card \(customer\)/);
    r = run("extend", { extension: "add-card", dataset: { ...CUSTOMER, state: "new" } });
    assert.equal(r.code, 65);
    assert.match(r.err, /the extension starts from customer\/active/);
    r = run("extend", { extension: "add-card", dataset: { ...CUSTOMER, data: { ...CUSTOMER.data, customer_id: "REFUSE" } } });
    assert.equal(r.code, 65);
    assert.match(r.err, /this customer cannot hold a card/);
    r = run("extend", { extension: "add-card", dataset: { ...CUSTOMER, data: { ...CUSTOMER.data, customer_id: "DROP" } } });
    assert.equal(r.code, 70);
    assert.match(r.err, /promised field `email` is missing from data/);
  });

  test("lifecycle calls", () => {
    let r = run("cleanup", { request_id: "r-9", dataset: CUSTOMER });
    assert.deepEqual([r.code, r.answer], [0, {}], r.err);
    assert.match(r.err, /cleaned customer:C1 for r-9/);
    r = run("reset", { request_id: "r", dataset: CUSTOMER });
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.answer, { data: { ...CUSTOMER.data, card: { last4: "0000" } }, secret_fields: ["password"], entities: ["customer:C1"] });
    r = run("verify", { request_id: "r", dataset: CUSTOMER });
    assert.deepEqual([r.code, r.answer], [0, { valid: true, reason: null }], r.err);
    r = run("verify", { request_id: "r", dataset: { ...CUSTOMER, data: { customer_id: "GONE" } } });
    assert.deepEqual([r.code, r.answer], [0, { valid: false, reason: "the customer was deleted" }], r.err);
    r = run("cleanup", { request_id: "r", dataset: dataset("x", "throws", {}) });
    assert.equal(r.code, 65);
    assert.match(r.err, /cleanup x\/throws: cleanup is not declared for x\/throws; declared for: customer\/active/);
  });

  test("bad requests and usage", () => {
    const done = spawnSync(process.execPath, [SAMPLE, "generate"], { input: "{not json", timeout: PATIENCE });
    assert.equal(done.status, 65);
    assert.match(done.stderr.toString(), /the request is not valid JSON/);
    let r = run("destroy", {});
    assert.equal(r.code, 64);
    assert.match(r.err, /unknown operation "destroy"/);
    r = run(["serve", "--port", "http"]);
    assert.equal(r.code, 64);
    assert.match(r.err, /--port takes a number/);
  });
});

describe("in process", () => {
  test("inspect and JSON.stringify never show secret values", () => {
    const ds = Dataset.fromWire(CUSTOMER);
    assert.doesNotMatch(inspect(ds), /hunter2/);
    assert.doesNotMatch(JSON.stringify(ds), /hunter2/);
    assert.match(inspect(ds), /\[redacted\]/);
    assert.equal(ds.data.password, "hunter2");
  });

  test("declaration mistakes are reported where they are made", () => {
    const gen = new Generator({ name: "t", log: () => {} });
    assert.throws(() => gen.produces({ type: "a", state: "b", fields: "customer_id" }, () => {}), DeclarationError);
    assert.throws(() => gen.produces({ type: "a", state: "b", requires: ["customer"] }, () => {}), /takes \{name, type, state\} objects/);
    gen.produces({ type: "a", state: "b" }, () => {});
    assert.throws(() => gen.produces({ type: "a", state: "b" }, () => {}), /a\/b is declared twice/);
    gen.cleanup("c", "d", () => {});
    assert.throws(() => gen.capabilities(), /cleanup is declared for c\/d, which this generator does not produce/);
  });
});

describe("HTTP mode", () => {
  let child;
  let url;
  before(async () => {
    child = spawn(process.execPath, [SAMPLE, "serve", "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
    child.stderr.resume();
    const lines = createInterface({ input: child.stdout });
    const [first] = await Promise.race([
      once(lines, "line"),
      new Promise((_, reject) => setTimeout(() => reject(new Error("the server did not announce its address")), PATIENCE).unref()),
    ]);
    assert.match(first, /^listening on http:\/\/127\.0\.0\.1:\d+$/);
    url = first.replace("listening on ", "");
  });
  after(() => child.kill("SIGKILL"));

  async function call(path, body) {
    const res = await fetch(url + path, body === undefined ? {} : { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
    return { status: res.status, type: res.headers.get("content-type"), body: await res.json() };
  }

  test("capabilities, generate and extend", async () => {
    let r = await call("/capabilities");
    assert.equal(r.status, 200);
    assert.ok(r.body.produces.some((p) => p.type === "customer"));
    r = await call("/generate", { type: "customer", state: "active", attributes: { country: "US" }, request_id: "h-0042" });
    assert.deepEqual([r.status, r.type], [200, "application/json"]);
    assert.equal(r.body.data.customer_id, "C0042");
    r = await call("/extend", { extension: "add-card", dataset: CUSTOMER });
    assert.equal(r.status, 200);
    assert.equal(r.body.data.payment_method_id, "pm_1");
  });

  test("errors are problem+json with the right status", async () => {
    let r = await call("/generate", { type: "customer", state: "gone" });
    assert.deepEqual([r.status, r.type], [422, "application/problem+json"]);
    assert.match(r.body.detail, /cannot generate customer\/gone/);
    r = await call("/generate", { type: "x", state: "throws" });
    assert.deepEqual([r.status, r.type], [500, "application/problem+json"]);
    assert.equal(r.body.detail, "generate x/throws threw TypeError: no-such-key");
    r = await call("/generate", { type: "x", state: "missing-field" });
    assert.equal(r.status, 500);
    assert.match(r.body.detail, /promised field `b\.c` is missing from data/);
    assert.equal((await call("/nowhere")).status, 404);
    assert.equal((await call("/destroy", {})).status, 404);
  });

  test("lifecycle over HTTP", async () => {
    assert.deepEqual((await call("/cleanup", { request_id: "r", dataset: CUSTOMER })).body, {});
    const r = await call("/verify", { request_id: "r", dataset: CUSTOMER });
    assert.deepEqual([r.status, r.body], [200, { valid: true, reason: null }]);
  });

  test("calls are served concurrently", async () => {
    const first = call("/generate", { type: "x", state: "wait", attributes: { role: "first" } });
    const second = call("/generate", { type: "x", state: "wait", attributes: { role: "second" } });
    const [a, b] = await Promise.all([first, second]);
    assert.deepEqual([a.status, b.status], [200, 200]);
  });

  test("SIGTERM stops the server cleanly", async () => {
    const proc = spawn(process.execPath, [SAMPLE, "serve"], { stdio: ["ignore", "pipe", "ignore"] });
    const [line] = await once(createInterface({ input: proc.stdout }), "line");
    assert.match(line, /^listening on /);
    proc.kill("SIGTERM");
    const [code] = await once(proc, "exit");
    assert.equal(code, 0);
  });
});

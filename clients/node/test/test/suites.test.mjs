// @stockroom/test's own suite: real inner suites (node:test, Jest, Vitest,
// Playwright with Debian's chromium) run against a real demo pool
// (`stockroom-pool demo`) under the real `stockroom run`, or with the agent the
// Playwright global setup starts itself. Each inner test records what it took
// (fixtures/record.mjs); this file checks what became of it in the pool, the
// runners' reports (JUnit properties) and that no secret reached any output.
//
// The binaries come from $STOCKROOM_BIN_DIR, else the repository's target/debug.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, "..");
const repo = resolve(pkg, "../../..");
const bin = process.env.STOCKROOM_BIN_DIR ?? join(repo, "target", "debug");
const fixtures = join(here, "fixtures");
const manifest = join(fixtures, "stockroom.toml");
const work = mkdtempSync(join(tmpdir(), "stockroom-node-tests-"));
let pool;
let poolUrl;

function run(cmd, args, { env = {}, cwd = pkg, timeoutMs = 240_000 } = {}) {
  return new Promise((resolveRun, reject) => {
    // Not this runner's own: node:test marks its children (NODE_TEST_CONTEXT) and would not run an inner suite.
    const base = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("STOCKROOM_") && k !== "NODE_TEST_CONTEXT"),
    );
    const child = spawn(cmd, args, {
      cwd,
      env: { ...base, PATH: `${bin}:${process.env.PATH}`, STOCKROOM_POOL: poolUrl, POOL_URL: poolUrl, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (out += c));
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      reject(new Error(`${cmd} ${args.join(" ")} did not end within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolveRun({ code, out });
    });
  });
}

const underStockroomRun = (cmd, args, opts) =>
  run(join(bin, "stockroom"), ["run", "--manifest", manifest, "--", cmd, ...args], opts);

async function getJson(path) {
  const answer = await fetch(poolUrl + "/api/v1" + path);
  assert.ok(answer.ok, `GET ${path}: ${answer.status}`);
  return answer.json();
}

function records(file) {
  const lines = readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  return { taken: lines.filter((l) => l.ids), secrets: lines.flatMap((l) => l.secrets ?? []) };
}

// Each recorded dataset's status is `expect`, and its history has the text
// `history` (the reason its take was done with) when the record names one.
async function checkStatuses(taken) {
  for (const { name, ids, expect, history } of taken) {
    for (const id of ids) {
      const { status } = await getJson(`/datasets/${id}`);
      if (history !== undefined) {
        const lines = JSON.stringify((await getJson(`/datasets/${id}`)).history);
        assert.ok(lines.includes(history), `${name}: ${id}'s history has no ${JSON.stringify(history)}: ${lines}`);
      }
      if (expect === "ready" && status === "generating") {
        // Back in stock, but the pool may be verifying or resetting it with
        // its generator right now (docs/generators.md, "Lifecycle calls"),
        // during which it reads `generating`: wait for it to be ready again.
        const deadline = Date.now() + 20_000;
        let now = status;
        while (now === "generating" && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100)); // poll interval inside a deadline
          now = (await getJson(`/datasets/${id}`)).status;
        }
        assert.equal(now, expect, `${name}: ${id}`);
      } else {
        assert.equal(status, expect, `${name}: ${id}`);
      }
    }
  }
}

function assertNoSecrets(text, secrets) {
  assert.ok(secrets.length > 0, "the inner suite recorded its secrets");
  for (const s of secrets) assert.ok(!text.includes(s), `a secret value reached the output:\n${text}`);
}

before(async () => {
  for (const name of ["stockroom", "stockroom-pool"]) {
    assert.ok(existsSync(join(bin, name)), `${join(bin, name)} is missing: cargo build -p stockroom -p stockroom-pool`);
  }
  const ready = join(work, "addr");
  const log = openSync(join(work, "pool.log"), "w");
  pool = spawn(join(bin, "stockroom-pool"), ["demo", "--listen", "127.0.0.1:0", "--shop-listen", "127.0.0.1:0", "--ready-file", ready, "--latency", "20ms"], {
    stdio: ["ignore", log, log],
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (existsSync(ready) && readFileSync(ready, "utf8").trim()) {
      poolUrl = `http://${readFileSync(ready, "utf8").trim()}`;
      try {
        if ((await fetch(poolUrl + "/readyz")).ok) break;
      } catch {
        // not listening yet
      }
    }
    assert.ok(Date.now() < deadline && pool.exitCode === null, `the demo pool did not start within 60 s:\n${readFileSync(join(work, "pool.log"), "utf8")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(async () => {
  if (pool && pool.exitCode === null) {
    const gone = new Promise((r) => pool.once("exit", r));
    pool.kill("SIGTERM");
    await gone;
  }
  rmSync(work, { recursive: true, force: true });
});

test("node:test with the client under stockroom run", async () => {
  const file = join(work, "node.jsonl");
  const { code, out } = await underStockroomRun(process.execPath, ["--test", join(fixtures, "node", "client.test.mjs")], {
    env: { RECORD: file },
  });
  assert.equal(code, 1, out); // the one test that fails on purpose
  assert.match(out, /# pass 8/, out);
  assert.match(out, /# fail 1/, out);
  const { taken, secrets } = records(file);
  await checkStatuses(taken);
  assertNoSecrets(out, secrets);
});

test("Jest (ESM) with withStockroom under stockroom run", async () => {
  const file = join(work, "jest.jsonl");
  const report = join(work, "jest.json");
  const { code, out } = await underStockroomRun(
    process.execPath,
    ["--experimental-vm-modules", join(pkg, "node_modules/jest/bin/jest.js"), "--rootDir", join(fixtures, "jest"),
      "--config", join(fixtures, "jest", "jest.config.mjs"), "--json", "--outputFile", report],
    { env: { RECORD: file } },
  );
  assert.equal(code, 1, out);
  const result = JSON.parse(readFileSync(report, "utf8"));
  assert.equal(result.numPassedTests, 1, out);
  assert.equal(result.numFailedTests, 1, out);
  const { taken, secrets } = records(file);
  await checkStatuses(taken);
  assertNoSecrets(out + readFileSync(report, "utf8"), secrets);
});

test("Vitest with withStockroom under stockroom run", async () => {
  const file = join(work, "vitest.jsonl");
  const report = join(work, "vitest.json");
  const { code, out } = await underStockroomRun(
    join(pkg, "node_modules/.bin/vitest"),
    ["run", "--root", join(fixtures, "vitest"), "--reporter=default", "--reporter=json", "--outputFile", report],
    { env: { RECORD: file } },
  );
  assert.equal(code, 1, out);
  const result = JSON.parse(readFileSync(report, "utf8"));
  assert.equal(result.numPassedTests, 1, out);
  assert.equal(result.numFailedTests, 1, out);
  const { taken, secrets } = records(file);
  await checkStatuses(taken);
  assertNoSecrets(out + readFileSync(report, "utf8"), secrets);
});

function junitProperties(xml) {
  const cases = {};
  for (const m of xml.matchAll(/<testcase name="([^"]*)"[\s\S]*?<\/testcase>/g)) {
    cases[m[1]] = [...m[0].matchAll(/<property name="stockroom\.dataset" value="([^"]*)"/g)].map((p) => p[1]);
  }
  return cases;
}

async function playwright(label, runner) {
  const file = join(work, `${label}.jsonl`);
  const junit = join(work, `${label}.xml`);
  const { code, out } = await runner(join(pkg, "node_modules/.bin/playwright"),
    ["test", "--config", join(fixtures, "playwright", "playwright.config.mjs")], { env: { RECORD: file, JUNIT: junit } });
  assert.equal(code, 1, out); // "fails on purpose" and the other unexpected outcomes
  // fails on purpose, times out, passes although test.fail(), the worker-fails project's test
  assert.match(out, /\b4 failed/, out);
  assert.match(out, /\b4 passed/, out);
  const xml = readFileSync(junit, "utf8");
  const props = junitProperties(xml);
  const { taken, secrets } = records(file);
  const titles = { "pw passes": "passes", "pw fails": "fails on purpose", "pw expected failure": "fails as expected",
    "pw skipped": "skipped after the take", "pw page": "a page shows the taken dataset", "pw timed out": "times out",
    "pw unexpected pass": "passes although test.fail() expects a failure" };
  const workerScoped = ["pw worker passes", "pw worker fails"]; // not a test's annotation
  assert.deepEqual(taken.map((t) => t.name).sort(), [...Object.keys(titles), ...workerScoped].sort(), "every test took and recorded");
  for (const { name, ids } of taken) {
    if (workerScoped.includes(name)) continue;
    const title = titles[name];
    const values = Object.entries(props).find(([k]) => k.endsWith(title))?.[1];
    assert.deepEqual(values?.map((v) => v.split(" ")[0]), ids, `${name}: ${xml}`);
    assert.ok(values.every((v) => / customer\/(active|new)$/.test(v)), values);
  }
  await checkStatuses(taken);
  assertNoSecrets(out + xml, secrets);
  return out;
}

test("Playwright fixtures under stockroom run: API tests, a page test in chromium, JUnit properties", async () => {
  const out = await playwright("pw-run", underStockroomRun);
  assert.doesNotMatch(out, /started `stockroom agent`/);
});

test("Playwright's global setup starts `stockroom agent` when there is none", async () => {
  const out = await playwright("pw-agent", run);
  assert.match(out, /stockroom: started `stockroom agent` for this run/);
});

test("Playwright: a test that the run interrupts (maxFailures) is cancelled", async () => {
  const file = join(work, "pw-interrupt.jsonl");
  const { code, out } = await run(join(pkg, "node_modules/.bin/playwright"),
    ["test", "--config", join(fixtures, "playwright", "interrupt.config.mjs")], { env: { RECORD: file } });
  assert.equal(code, 1, out);
  assert.match(out, /\b1 failed/, out);
  assert.match(out, /\b1 interrupted/, out);
  const { taken } = records(file);
  assert.deepEqual(taken.map((t) => t.name), ["pw interrupted"], out);
  await checkStatuses(taken);
});

test("node:test without an agent: Stockroom.fromEnv() throws NoAgentError", async () => {
  const { code, out } = await run(process.execPath, ["--test", join(fixtures, "node", "no-agent.test.mjs")], { timeoutMs: 60_000 });
  assert.equal(code, 1, out);
  assert.match(out, /# pass 1/, out);
  assert.match(out, /# fail 1/, out);
  assert.match(out, /NoAgentError/, out);
  assert.match(out, /STOCKROOM_AGENT_URL is not set; run the tests under `stockroom run -- /, out);
});

test("Jest and Vitest without an agent: each withStockroom test fails with NoAgentError's message", async () => {
  const jestReport = join(work, "jest-no-agent.json");
  const jest = await run(process.execPath,
    ["--experimental-vm-modules", join(pkg, "node_modules/jest/bin/jest.js"), "--rootDir", join(fixtures, "jest"),
      "--config", join(fixtures, "jest", "jest.config.mjs"), "--json", "--outputFile", jestReport],
    { env: { RECORD: join(work, "jest-no-agent.jsonl") }, timeoutMs: 120_000 });
  const vitestReport = join(work, "vitest-no-agent.json");
  const vitest = await run(join(pkg, "node_modules/.bin/vitest"),
    ["run", "--root", join(fixtures, "vitest"), "--reporter=default", "--reporter=json", "--outputFile", vitestReport],
    { env: { RECORD: join(work, "vitest-no-agent.jsonl") }, timeoutMs: 120_000 });
  for (const [runner, { code, out }, report] of [["jest", jest, jestReport], ["vitest", vitest, vitestReport]]) {
    assert.equal(code, 1, `${runner}: ${out}`);
    const result = JSON.parse(readFileSync(report, "utf8"));
    assert.equal(result.numPassedTests, 0, `${runner}: ${out}`);
    assert.equal(result.numFailedTests, 2, `${runner}: ${out}`);
    const messages = result.testResults.flatMap((f) => f.assertionResults.flatMap((a) => a.failureMessages));
    assert.equal(messages.length, 2, `${runner}: ${JSON.stringify(result)}`);
    for (const m of messages) assert.match(m, /stockroom: no agent: STOCKROOM_AGENT_URL is not set; run the tests under `stockroom run -- /, runner);
  }
});

test("Jest without stockroom run: startAgent() in its globalSetup serves the tests", async () => {
  const file = join(work, "jest-agent.jsonl");
  const report = join(work, "jest-agent.json");
  const { code, out } = await run(process.execPath,
    ["--experimental-vm-modules", join(pkg, "node_modules/jest/bin/jest.js"), "--rootDir", join(fixtures, "jest-agent"),
      "--config", join(fixtures, "jest-agent", "jest.config.mjs"), "--json", "--outputFile", report],
    { env: { RECORD: file } });
  assert.equal(code, 0, out);
  assert.equal(JSON.parse(readFileSync(report, "utf8")).numPassedTests, 1, out);
  const { taken } = records(file);
  assert.deepEqual(taken.map((t) => t.name), ["jest startAgent"], out);
  const exits = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((l) => "agentExit" in l);
  assert.deepEqual(exits, [{ agentExit: 0 }], "the globalTeardown stopped the agent");
  await checkStatuses(taken);
});

test("Jest without stockroom run and without a pool: startAgent() fails the run at once", async () => {
  const { code, out } = await run(process.execPath,
    ["--experimental-vm-modules", join(pkg, "node_modules/jest/bin/jest.js"), "--rootDir", join(fixtures, "jest-agent"),
      "--config", join(fixtures, "jest-agent", "jest.config.mjs")],
    { env: { STOCKROOM_POOL: "", RECORD: join(work, "jest-no-pool.jsonl") }, timeoutMs: 60_000 });
  assert.notEqual(code, 0, out);
  assert.match(out, /stockroom: `stockroom agent` ended before it was ready/, out);
  assert.match(out, /no pool configured/, out);
  assert.ok(!existsSync(join(work, "jest-no-pool.jsonl")), "no test ran");
});

test("with no agent and no pool, Playwright's global setup fails at once", async () => {
  const { code, out } = await run(join(pkg, "node_modules/.bin/playwright"),
    ["test", "--config", join(fixtures, "playwright", "playwright.config.mjs")],
    { env: { STOCKROOM_POOL: "", RECORD: join(work, "none.jsonl"), JUNIT: join(work, "none.xml") }, timeoutMs: 60_000 });
  assert.notEqual(code, 0);
  assert.match(out, /STOCKROOM_AGENT_URL is not set.*stockroom run/s, out);
});

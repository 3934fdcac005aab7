// Playwright fixtures for Stockroom (docs/plugins/playwright.md).
//
//   import { test, expect } from "@stockroom/test/playwright";
//   test("pays", async ({ stockroom, request }) => {
//     const order = await stockroom.take("order/placed");
//     ...
//   });
//
// - `stockroom` (test scope): its takes are done with the test's outcome
//   (from testInfo.status and expectedStatus), and each dataset is an
//   annotation {type: "stockroom.dataset", description: "ds_… type/state"},
//   which Playwright's JUnit reporter writes as a property of the test case.
// - `workerStockroom` (worker scope): data for every test of one worker; done
//   when the worker ends, "failed" if a test of that worker failed, else "passed".
// Secret values of the taken datasets are masked in the test's errors.

import { test as base } from "@playwright/test";
import { Stockroom, scrubError } from "./index.js";

export { expect } from "@playwright/test";
export const ANNOTATION = "stockroom.dataset";
// ANSI colour and style sequences (ESC [ … letter).
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

/** The outcome a test's takes are done with, and why (docs/plugins/playwright.md). */
export function outcomeOf(testInfo) {
  const { status, expectedStatus } = testInfo;
  if (status === "interrupted") return ["cancelled", "the test run was interrupted"];
  if (status === "skipped") return ["passed", "skipped after the take"];
  if (status === expectedStatus) return ["passed", status === "failed" ? "failed as expected (test.fail)" : ""];
  if (status === "passed") return ["failed", "passed although test.fail() expected a failure"];
  // Playwright colours its messages for the terminal; the pool's history is plain text.
  const first = (testInfo.errors?.[0]?.message ?? "").replace(ANSI, "");
  return ["failed", `${status}${first ? ": " + first.split("\n")[0] : ""}`];
}

function testId(testInfo) {
  return `${testInfo.file ? testInfo.file.split(/[\\/]/).slice(-2).join("/") : ""}::${testInfo.titlePath.slice(1).join(" › ")}`;
}

function scrubErrors(testInfo, secrets) {
  if (!secrets.length) return;
  for (const error of [testInfo.error, ...(testInfo.errors ?? [])]) scrubError(error, secrets);
}

const workerFailures = { count: 0 };
// Secret texts of what each running test took (by testId), so that both the
// `stockroom` fixture and the auto fixture below can mask them in its errors.
const secretsByTest = new Map();

export const test = base.extend({
  // Counts this worker's unexpected failures for workerStockroom's outcome.
  _stockroomWatch: [
    async ({}, use, testInfo) => {
      await use(undefined);
      scrubErrors(testInfo, [...(secretsByTest.get(testInfo.testId) ?? [])]);
      secretsByTest.delete(testInfo.testId);
      if (testInfo.status !== testInfo.expectedStatus && testInfo.status !== "skipped") workerFailures.count++;
    },
    { auto: true },
  ],

  stockroom: async ({}, use, testInfo) => {
    const stockroom = Stockroom.fromEnv({
      test: testId(testInfo),
      worker: `w${testInfo.workerIndex}`,
      onTake: (d) => {
        testInfo.annotations.push({ type: ANNOTATION, description: `${d.id} ${d.stateRef}` });
        if (!secretsByTest.has(testInfo.testId)) secretsByTest.set(testInfo.testId, new Set());
        for (const secret of d.secretValues()) secretsByTest.get(testInfo.testId).add(secret);
      },
    });
    await use(stockroom);
    const secrets = stockroom.secretValues();
    scrubErrors(testInfo, secrets);
    const [outcome, reason] = outcomeOf(testInfo);
    await stockroom.done(outcome, { reason });
  },

  workerStockroom: [
    async ({}, use, workerInfo) => {
      const stockroom = Stockroom.fromEnv({ test: `worker ${workerInfo.workerIndex}`, worker: `w${workerInfo.workerIndex}` });
      await use(stockroom);
      const failed = workerFailures.count > 0;
      await stockroom.done(failed ? "failed" : "passed", {
        reason: failed ? `${workerFailures.count} test(s) of worker ${workerInfo.workerIndex} failed` : undefined,
      });
    },
    { scope: "worker" },
  ],
});

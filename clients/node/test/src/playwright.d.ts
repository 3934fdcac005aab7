// Types of @stockroom/test/playwright (docs/plugins/playwright.md).
import type { TestType, PlaywrightTestArgs, PlaywrightTestOptions, PlaywrightWorkerArgs, PlaywrightWorkerOptions, TestInfo } from "@playwright/test";
import type { Stockroom, Outcome } from "./index.js";

export { expect } from "@playwright/test";
export const ANNOTATION: "stockroom.dataset";
export function outcomeOf(testInfo: TestInfo): [Outcome, string];

export const test: TestType<
  PlaywrightTestArgs & PlaywrightTestOptions & { stockroom: Stockroom },
  PlaywrightWorkerArgs & PlaywrightWorkerOptions & { workerStockroom: Stockroom }
>;

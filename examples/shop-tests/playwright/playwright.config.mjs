// The demo shop's API tests (examples/shop-tests/README.md): 4 workers, every
// test in parallel, API tests through `request` against $SHOP_URL and one page
// test in Debian's chromium.
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineConfig } from "@playwright/test";

const shared = process.env.SHOP_TESTS_MODE === "shared";

export default defineConfig({
  testDir: "tests",
  workers: 4,
  fullyParallel: true,
  outputDir: process.env.PW_OUTPUT ?? join(tmpdir(), "shop-tests-playwright-results"),
  // Per-test mode without `stockroom run`: starts `stockroom agent` from STOCKROOM_POOL.
  globalSetup: shared ? undefined : "@stockroom/test/playwright/global-setup",
  reporter: [["list"], ["junit", { outputFile: process.env.JUNIT ?? "junit.xml" }]],
  use: {
    baseURL: process.env.SHOP_URL,
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    },
  },
});

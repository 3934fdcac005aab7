// Playwright globalSetup (docs/plugins/playwright.md): with no agent in the
// environment, starts `stockroom agent` for the run (pool from STOCKROOM_POOL
// and STOCKROOM_TOKEN); Playwright's workers inherit the variables it sets.
// Returns the teardown that stops the agent, which then settles what is left.
//
//   // playwright.config.js
//   export default defineConfig({ globalSetup: "@stockroom/test/playwright/global-setup" });

import { NoAgentError, TOKEN_ENV, URL_ENV, startAgent } from "./index.js";

export default async function stockroomGlobalSetup() {
  if (process.env[URL_ENV]) return undefined;
  if (!process.env.STOCKROOM_POOL) {
    throw new NoAgentError(
      `stockroom: no agent for these tests: ${URL_ENV} is not set. Run them under the sidecar, ` +
        "`stockroom run --manifest stockroom.toml -- npx playwright test`, which serves the agent; " +
        "or set STOCKROOM_POOL (and STOCKROOM_TOKEN) with `stockroom` on PATH and this setup starts `stockroom agent`",
    );
  }
  const agent = await startAgent();
  process.env[URL_ENV] = agent.url;
  process.env[TOKEN_ENV] = agent.token;
  console.log(`stockroom: started \`stockroom agent\` for this run at ${agent.url}`);
  return async () => {
    await agent.stop();
    delete process.env[URL_ENV];
    delete process.env[TOKEN_ENV];
  };
}

// `customer` and `order` for the shop tests. SHOP_TESTS_MODE=shared: the job's
// one customer and order from STOCKROOM_BUYER_* / STOCKROOM_ORDER_* (the
// env-var style), shared by every worker. Otherwise each test takes its own
// through @stockroom/test's `stockroom` fixture.
import { test as plain } from "@playwright/test";
import { test as withStockroom } from "@stockroom/test/playwright";

export { expect } from "@playwright/test";
const shared = process.env.SHOP_TESTS_MODE === "shared";
const env = (name) => process.env[name];

export const test = shared
  ? plain.extend({
      customer: async ({}, use) =>
        use({ customer_id: env("STOCKROOM_BUYER_CUSTOMER_ID"), email: env("STOCKROOM_BUYER_EMAIL"), password: env("STOCKROOM_BUYER_PASSWORD") }),
      order: async ({}, use) => use({ order_id: env("STOCKROOM_ORDER_ORDER_ID"), customer_id: env("STOCKROOM_ORDER_CUSTOMER_ID") }),
    })
  : withStockroom.extend({
      customer: async ({ stockroom }, use) => use((await stockroom.take("customer/active-with-payment")).data),
      order: async ({ stockroom }, use) => use((await stockroom.take("order/placed")).data),
    });

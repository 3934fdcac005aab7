// Compiled with `tsc --noEmit` by the suite: the published types describe the API.
import { AgentClient, Dataset, Stockroom, UnknownStateError, datasets, withStockroom } from "@stockroom/test";
import { expect, test } from "@stockroom/test/playwright";
import globalSetup from "@stockroom/test/playwright/global-setup";

export async function client(): Promise<void> {
  const stockroom = Stockroom.fromEnv({ test: "types", waitSeconds: 5 });
  const one: Dataset = await stockroom.take("customer/active", { where: { country: "DE" } });
  const many: Dataset[] = await stockroom.take("order/placed", { count: 2 });
  const id: string = one.id + many[0].stateRef + String(one.data.customer_id);
  await stockroom.done("passed", { reason: id });
  const job = await datasets();
  const buyers: Dataset[] = job.buyer;
  void buyers;
  void new AgentClient("http://127.0.0.1:1", "t").take([{ type: "customer", state: "new" }]);
  void (globalSetup as () => Promise<unknown>);
  try {
    await stockroom.take("x/y");
  } catch (e) {
    if (e instanceof UnknownStateError) void e.knownStates.join(", ");
  }
}

export const wrapped: () => Promise<number> = withStockroom(async (stockroom: Stockroom) => stockroom.datasets.length);

test("typed fixtures", async ({ stockroom, request }) => {
  const order = await stockroom.take("order/placed");
  expect(order.type).toBe("order");
  void request;
});
test("worker fixture", async ({ workerStockroom }) => {
  void (await workerStockroom.take("customer/new"));
});

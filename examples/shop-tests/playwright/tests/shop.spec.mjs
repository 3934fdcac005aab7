// Mutations of the demo shop that collide when two tests share a customer or an order.
import { expect, test } from "./fixtures.mjs";

const runs = [0, 1, 2, 3]; // each scenario a few times, as a real suite has many tests per flow

for (const run of runs) {
  test(`place and pay an order #${run}`, async ({ request, customer }) => {
    const placed = await request.post("/shop/orders", { data: { customer_id: customer.customer_id } });
    expect(placed.status(), await placed.text()).toBe(201); // 409 open-order: another test's order is open
    const order = await placed.json();
    const seen = await (await request.get(`/shop/customers/${customer.customer_id}`)).json();
    expect(seen.orders).toContain(order.order_id);
    const paid = await request.post(`/shop/orders/${order.order_id}/pay`);
    expect(paid.status(), await paid.text()).toBe(200);
    expect((await paid.json()).status).toBe("paid");
  });

  test(`place and cancel an order #${run}`, async ({ request, customer }) => {
    const placed = await request.post("/shop/orders", { data: { customer_id: customer.customer_id } });
    expect(placed.status(), await placed.text()).toBe(201);
    const cancelled = await request.post(`/shop/orders/${(await placed.json()).order_id}/cancel`);
    expect(cancelled.status(), await cancelled.text()).toBe(200);
  });

  test(`change the password and log in #${run}`, async ({ request, customer }) => {
    const before = await request.post("/shop/login", { data: { email: customer.email, password: customer.password } });
    expect(before.status(), "the dataset's password logs in").toBe(200); // 401: another test changed it
    const password = `pw-${Math.random().toString(16).slice(2)}`;
    expect((await request.post(`/shop/customers/${customer.customer_id}/password`, { data: { password } })).status()).toBe(200);
    const after = await request.post("/shop/login", { data: { email: customer.email, password } });
    expect(after.status()).toBe(200);
    expect((await after.json()).customer_id).toBe(customer.customer_id);
  });

  test(`pay a placed order #${run}`, async ({ request, order }) => {
    const paid = await request.post(`/shop/orders/${order.order_id}/pay`);
    expect(paid.status(), await paid.text()).toBe(200); // 409: another test paid it already
  });

  test(`cancel a placed order #${run}`, async ({ request, order }) => {
    const cancelled = await request.post(`/shop/orders/${order.order_id}/cancel`);
    expect(cancelled.status(), await cancelled.text()).toBe(200);
  });
}

test("the customer's page shows the customer (chromium)", async ({ page, customer }) => {
  await page.goto(`/shop/customers/${customer.customer_id}`);
  await expect(page.locator("body")).toContainText(customer.email);
});

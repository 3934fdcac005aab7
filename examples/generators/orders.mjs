#!/usr/bin/env node
// @ts-check
// The orders team's generator, written with the TypeScript SDK @stockroom/generator
// (docs/generators.md). Plain ESM JavaScript runs on Node >= 20 as it is; the
// SDK's types check it (`// @ts-check`), and the same code is valid TypeScript.
//
//   node examples/generators/orders.mjs capabilities           # a command
//   node examples/generators/orders.mjs serve --port 9002      # an HTTP service
//
// It adds a card to the customers team's `customer/active` (an extension of a
// state it does not own) and places orders for such customers (a state built
// from another: the pool passes the customer as `req.inputs.customer`).
// In this repository the SDK is found through node_modules/ beside this file;
// in your project, `npm install` clients/node/generator.
// A real generator calls the shop's API; this one makes the records up and,
// when STOCKROOM_EXAMPLE_LEDGER names a file, writes what it created and
// removed there, standing in for the system under test.
import { appendFileSync } from "node:fs";
import { randomInt } from "node:crypto";
import { Generator, Refuse } from "@stockroom/generator";

const gen = new Generator({ name: "orders" });
/** @param {string} event @param {string} entity */
const ledger = (event, entity) =>
  process.env.STOCKROOM_EXAMPLE_LEDGER && appendFileSync(process.env.STOCKROOM_EXAMPLE_LEDGER, `${event} ${entity}\n`);

gen.extension(
  { name: "add-card", type: "customer", from: "active", to: "active-with-payment", fields: ["payment_method_id"] },
  (customer) =>
    // `data` replaces the old data, so everything is sent back.
    gen.dataset({ data: { ...customer.data, payment_method_id: `pm_${randomInt(1e6)}` } }),
);

gen.produces(
  {
    type: "order", state: "placed", description: "an order paid by card, not shipped yet",
    fields: ["order_id", "customer_id", "total.amount", "total.currency"],
    requires: [{ name: "customer", type: "customer", state: "active-with-payment" }],
  },
  (req) => {
    const { customer } = req.inputs;
    if (!customer.data.payment_method_id) throw new Refuse(`customer ${customer.id} has no card to pay with`);
    const orderId = `O${randomInt(10000, 99999)}`;
    ledger("created", `order:${orderId}`);
    return gen.dataset({
      data: {
        order_id: orderId, customer_id: customer.data.customer_id, payment_method_id: customer.data.payment_method_id,
        total: { amount: "39.80", currency: customer.attributes.country === "US" ? "USD" : "EUR" },
      },
      entities: [`order:${orderId}`], // the customer's entities join through the input
    });
  },
);

gen.cleanup("order", "placed", (order) => {
  for (const entity of order.entities) ledger("removed", entity);
});

await gen.main();

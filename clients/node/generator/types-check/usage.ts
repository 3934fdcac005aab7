// Compiled with `tsc --noEmit` by .ci/sdk-tests.sh: the declarations type a
// real generator, and misuse is a compile error (the @ts-expect-error lines).
import { Generator, Refuse, type Dataset } from "@stockroom/generator";

const gen = new Generator({ name: "orders" });

gen.produces(
  { type: "order", state: "placed", fields: ["order_id"], requires: [{ name: "customer", type: "customer", state: "active-with-payment" }] },
  async (req) => {
    const customer: Dataset = req.inputs.customer;
    // @ts-expect-error: only declared requirements are inputs
    void req.inputs.buyer;
    const id: string | null = req.requestId;
    if (!customer.data.customer_id) throw new Refuse(`no customer for ${id}`);
    return gen.dataset({ data: { order_id: "O1", customer_id: customer.data.customer_id }, entities: ["order:O1"] });
  },
);

gen.extension({ name: "ship", type: "order", from: "placed", to: "shipped" }, (dataset) =>
  gen.dataset({ data: { ...dataset.data, shipped: true } }));

gen.verify("order", "placed", () => ({ valid: false, reason: "gone" }));
gen.cleanup("order", "placed", async () => {});
// @ts-expect-error: a verify function answers a verdict, not a string
gen.verify("order", "shipped", () => "yes");
// @ts-expect-error: a state needs a type
gen.produces({ state: "x" }, () => gen.dataset({ data: {} }));

await gen.main(["capabilities"]);

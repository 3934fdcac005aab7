"""A generator exercising every part of the SDK, for the SDK's own tests.

Besides good states it has deliberately broken ones (x/...), so tests can
see what the SDK does with a missing field, an exception, a huge answer.
"""

import os
import sys
import threading

from stockroom_generator import Generator, Refuse

gen = Generator(name="sample", max_answer_bytes=int(os.environ.get("SAMPLE_MAX_ANSWER", str(16 * 1024 * 1024))))


@gen.produces("customer", "active", fields=["customer_id", "email", "card.last4"], secret_fields=["password"],
              attributes={"country": ["DE", "US"], "tier": []}, description="verified customer", reusable=True)
def make_customer(req):
    print("a stray print that must not reach the answer")
    os.system("echo a child process writing to stdout")
    cid = "C" + (req.request_id or "0")[-4:]
    return gen.dataset(
        data={"customer_id": cid, "email": f"{cid}@x.test", "password": "hunter2", "card": {"last4": "4242"}},
        attributes={"country": req.attributes.get("country", "US")},
        entities=[f"customer:{cid}"],
    )


@gen.produces("order", "placed", fields=["order_id", "customer_id"],
              requires=[("buyer", "customer", "active-with-payment")])
def place_order(req):
    buyer = req.inputs["buyer"]
    return gen.dataset(data={"order_id": "O1", "customer_id": buyer.data["customer_id"],
                             "buyer_type": type(buyer).__name__}, entities=["order:O1"])


@gen.extension("add-card", "customer", frm="active", to="active-with-payment", fields=["payment_method_id"])
def add_card(dataset, req):
    if dataset.data.get("customer_id") == "REFUSE":
        raise Refuse("this customer cannot hold a card")
    data = {**dataset.data, "payment_method_id": "pm_1"}
    if dataset.data.get("customer_id") == "DROP":
        data.pop("email")
    return gen.dataset(data=data)


@gen.cleanup("customer", "active")
def cleanup(dataset, req):
    sys.stderr.write(f"cleaned {dataset.entities} for {req.request_id}\n")


@gen.reset("customer", "active")
def reset(dataset, req):
    return gen.dataset(data={**dataset.data, "card": {"last4": "0000"}})


@gen.verify("customer", "active")
def verify(dataset, req):
    return (False, "the customer was deleted") if dataset.data.get("customer_id") == "GONE" else True


@gen.produces("x", "missing-field", fields=["a", "b.c"])
def missing_field(req):
    return gen.dataset(data={"a": 1, "b": {}})


@gen.produces("x", "raises")
def raises(req):
    raise KeyError("no-such-key")


@gen.produces("x", "huge", fields=["blob"])
def huge(req):
    return gen.dataset(data={"blob": "x" * 2_000_000})


@gen.produces("x", "undeclared-secret", fields=["a"])
def undeclared_secret(req):
    return gen.dataset(data={"a": 1, "token": "t"}, secret_fields=["token"])


@gen.produces("x", "bad-entities")
def bad_entities(req):
    return gen.dataset(data={}, entities=["nocolon", "k:1", "k:1"])


@gen.produces("x", "wrong-return")
def wrong_return(req):
    return ["not", "an", "answer"]


ARRIVED = threading.Event()


@gen.produces("x", "wait", attributes={"role": []})
def wait(req):
    # Answers only once a second call has arrived: proves calls run concurrently.
    if req.attributes.get("role") == "second":
        ARRIVED.set()
        return gen.dataset(data={})
    if not ARRIVED.wait(20):
        raise TimeoutError("the second call never arrived")
    return gen.dataset(data={})


if __name__ == "__main__":
    gen.main()

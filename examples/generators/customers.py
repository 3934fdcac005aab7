#!/usr/bin/env python3
"""The customers team's generator, written with the Python SDK (docs/generators.md).

As a command (what the pool runs for `command = [...]`):

    python3 examples/generators/customers.py capabilities
    echo '{"type": "customer", "state": "new", "attributes": {"country": "DE"}}' \
        | python3 examples/generators/customers.py generate

As an HTTP service (for `url = "http://127.0.0.1:9001"`):

    python3 examples/generators/customers.py serve --port 9001

In this repository the SDK is found through the `stockroom_generator` link
beside this file; in your project, install `clients/python` with pip.

A real generator calls the customer service's API, the way the product
creates customers. This one makes the records up and, when
STOCKROOM_EXAMPLE_LEDGER names a file, writes what it created and removed
there, standing in for the system under test.
"""

import os
import secrets

from stockroom_generator import Generator

gen = Generator(name="customers")
COUNTRIES = ["DE", "US", "FR"]
CUSTOMER = {"fields": ["customer_id", "email", "password", "country"], "secret_fields": ["password"],
            "attributes": {"country": COUNTRIES}}


def ledger(event, entity):
    path = os.environ.get("STOCKROOM_EXAMPLE_LEDGER")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{event} {entity}\n")


def removed(entity):
    path = os.environ.get("STOCKROOM_EXAMPLE_LEDGER")
    if not path or not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        return f"removed {entity}\n" in f.readlines()


@gen.produces("customer", "new", description="registered customer, email not verified yet", **CUSTOMER)
def register(req):
    country = req.attributes.get("country") or secrets.choice(COUNTRIES)
    customer_id = f"C{secrets.randbelow(90000) + 10000}"
    ledger("created", f"customer:{customer_id}")
    return gen.dataset(
        data={"customer_id": customer_id, "email": f"{customer_id.lower()}@x.test",
              "password": secrets.token_urlsafe(12), "country": country},
        attributes={"country": country},
        entities=[f"customer:{customer_id}"],
    )


@gen.produces("customer", "active", description="verified customer", **{
    **CUSTOMER, "fields": CUSTOMER["fields"] + ["email_verified_at"]})
def register_verified(req):
    new = register(req)
    new.data["email_verified_at"] = "2025-01-01T00:00:00Z"
    return new


@gen.extension("verify-email", "customer", frm="new", to="active", fields=["email_verified_at"])
def verify_email(dataset, req):
    # `data` replaces the old data, so everything is sent back.
    return gen.dataset(data={**dataset.data, "email_verified_at": "2025-01-01T00:00:00Z"})


@gen.cleanup("customer", "new")
@gen.cleanup("customer", "active")
def remove(dataset, req):
    for entity in dataset.entities:
        ledger("removed", entity)


@gen.reset("customer", "active")
def new_password(dataset, req):
    # Back to the state's start: a test may have changed the password, so the
    # customer gets a fresh one; `data` replaces the old data, so the rest is sent back.
    for entity in dataset.entities:
        ledger("reset", entity)
    return gen.dataset(data={**dataset.data, "password": secrets.token_urlsafe(12)})


@gen.verify("customer", "active")
def still_there(dataset, req):
    gone = [e for e in dataset.entities if removed(e)]
    return (False, f"{', '.join(gone)} was removed") if gone else True


if __name__ == "__main__":
    gen.main()

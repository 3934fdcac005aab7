"""The demo shop's API tests (examples/shop-tests/README.md).

SHOP_TESTS_MODE=shared: the tests share the job's one customer and one order,
read from STOCKROOM_BUYER_* / STOCKROOM_ORDER_* (the env-var style of a
per-shard lease, or of a seeded test account): parallel workers collide.
Otherwise each test takes its own through pytest-stockroom's `stockroom` fixture.
"""

import json
import os
import urllib.error
import urllib.request

import pytest

SHARED = os.environ.get("SHOP_TESTS_MODE") == "shared"


class Shop:
    """A small client of the demo shop's API (docs/plugins/pytest.md)."""

    def __init__(self, url):
        self.url = url.rstrip("/")

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="session")
def shop():
    return Shop(os.environ["SHOP_URL"])


@pytest.fixture
def customer(request):
    """A customer with a card: {customer_id, email, password}."""
    if SHARED:
        return {key: os.environ[f"STOCKROOM_BUYER_{key.upper()}"] for key in ("customer_id", "email", "password")}
    return request.getfixturevalue("stockroom").take("customer/active-with-payment").data


@pytest.fixture
def order(request):
    """An order in status `placed`: {order_id, customer_id}."""
    if SHARED:
        return {"order_id": os.environ["STOCKROOM_ORDER_ORDER_ID"],
                "customer_id": os.environ["STOCKROOM_ORDER_CUSTOMER_ID"]}
    return request.getfixturevalue("stockroom").take("order/placed").data

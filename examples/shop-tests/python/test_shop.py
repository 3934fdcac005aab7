"""Mutations of the demo shop that collide when two tests share a customer or an order."""

import secrets

import pytest

RUNS = range(4)  # each scenario a few times, as a real suite has many tests per flow


@pytest.mark.stockroom("customer/active-with-payment")
@pytest.mark.parametrize("run", RUNS)
def test_place_and_pay_an_order(shop, customer, run):
    status, placed = shop.call("POST", "/shop/orders", {"customer_id": customer["customer_id"]})
    assert status == 201, placed  # 409 open-order: another test's order is open on this customer
    status, seen = shop.call("GET", f"/shop/customers/{customer['customer_id']}")
    assert placed["order_id"] in seen["orders"]
    status, paid = shop.call("POST", f"/shop/orders/{placed['order_id']}/pay")
    assert (status, paid["status"]) == (200, "paid"), paid


@pytest.mark.stockroom("customer/active-with-payment")
@pytest.mark.parametrize("run", RUNS)
def test_place_and_cancel_an_order(shop, customer, run):
    status, placed = shop.call("POST", "/shop/orders", {"customer_id": customer["customer_id"]})
    assert status == 201, placed
    status, cancelled = shop.call("POST", f"/shop/orders/{placed['order_id']}/cancel")
    assert (status, cancelled["status"]) == (200, "cancelled"), cancelled


@pytest.mark.stockroom("customer/active-with-payment")
@pytest.mark.parametrize("run", RUNS)
def test_change_the_password_and_log_in(shop, customer, run):
    status, _ = shop.call("POST", "/shop/login", {"email": customer["email"], "password": customer["password"]})
    assert status == 200, "the dataset's password logs in"  # 401: another test changed it
    new = "pw-" + secrets.token_hex(8)
    status, _ = shop.call("POST", f"/shop/customers/{customer['customer_id']}/password", {"password": new})
    assert status == 200
    status, who = shop.call("POST", "/shop/login", {"email": customer["email"], "password": new})
    assert (status, who.get("customer_id")) == (200, customer["customer_id"])


@pytest.mark.stockroom("order/placed")
@pytest.mark.parametrize("run", RUNS)
def test_pay_a_placed_order(shop, order, run):
    status, paid = shop.call("POST", f"/shop/orders/{order['order_id']}/pay")
    assert (status, paid.get("status")) == (200, "paid"), paid  # 409: another test paid it already


@pytest.mark.stockroom("order/placed")
@pytest.mark.parametrize("run", RUNS)
def test_cancel_a_placed_order(shop, order, run):
    status, cancelled = shop.call("POST", f"/shop/orders/{order['order_id']}/cancel")
    assert (status, cancelled.get("status")) == (200, "cancelled"), cancelled

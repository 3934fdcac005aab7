"""Dataset, Secret and the job file, without a pool (pure functions of their input)."""

import json

import pytest

from pytest_stockroom import Dataset, Secret, datasets
from pytest_stockroom.plugin import reserve_items

BODY = {
    "name": "buyer", "index": 0, "id": "ds_1", "type": "customer", "state": "active-with-payment",
    "attributes": {"country": "DE"},
    "data": {"customer_id": "C1", "password": "hunter2", "card": {"number": "4242424242424242", "last4": "4242"}},
    "secret_fields": ["password", "card.number"], "entities": ["customer:C1"],
    "inputs": {"customer": {"id": "ds_0", "type": "customer", "state": "active",
                            "data": {"password": "older-secret"}, "secret_fields": ["password"]}},
}


def test_secrets_keep_their_value_but_never_show_it():
    d = Dataset.from_json(BODY)
    assert d.data["password"] == "hunter2" and isinstance(d.data["password"], Secret)
    assert json.dumps(d.data["password"]) == '"hunter2"'  # sent to the system under test as is
    for text in (repr(d), str(d), repr(d.data), repr(d.inputs)):
        assert "hunter2" not in text and "4242424242424242" not in text and "older-secret" not in text
    assert "'last4': '4242'" in repr(d) and "'***'" in repr(d)
    assert sorted(d.secret_values()) == ["4242424242424242", "hunter2", "older-secret"]
    assert d.state_ref == "customer/active-with-payment" and d.inputs["customer"].id == "ds_0"


def test_the_job_file_gives_a_list_for_any_count(tmp_path):
    path = tmp_path / "datasets.json"
    path.write_text(json.dumps({"lease_id": "l_1", "shard": {"index": 0, "total": 1},
                                "datasets": {"buyer": BODY, "orders": [BODY, dict(BODY, id="ds_2")]}}))
    job = datasets(str(path))
    assert [d.id for d in job["buyer"]] == ["ds_1"] and [d.id for d in job["orders"]] == ["ds_1", "ds_2"]
    assert job.one("buyer").name == "buyer" and job["orders"][1].index == 1 and job.lease_id == "l_1"
    with pytest.raises(KeyError, match="has no dataset 'nope'; it has: buyer, orders"):
        job["nope"]


def test_markers_are_summed_per_state_and_where():
    marks = [
        {"test": "a", "type": "customer", "state": "active", "where": {"country": "DE"}, "count": 1},
        {"test": "b", "type": "customer", "state": "active", "where": {"country": "DE"}, "count": 2},
        {"test": "c", "type": "customer", "state": "active", "where": {}, "count": 1},
    ]
    assert reserve_items(marks) == [
        {"type": "customer", "state": "active", "where": {"country": "DE"}, "count": 3},
        {"type": "customer", "state": "active", "where": {}, "count": 1},
    ]

"""pytest-stockroom against the real agent and pool (see conftest.py).

Every test runs a real inner pytest session in a subprocess and checks what it
printed, its JUnit XML, and what became of the datasets in the pool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import junit_properties

USAGE_ERROR = 4


def _ids(values):
    return [v.split(" ")[0] for v in values]


def test_each_take_is_done_with_its_test_outcome_and_is_a_junit_property(inner, demo_pool):
    inner.makepyfile(
        test_outcomes="""
        import pytest

        @pytest.mark.stockroom("customer/active")
        def test_passes(stockroom):
            c = stockroom.take("customer/active")
            assert c.id.startswith("ds_") and (c.type, c.state) == ("customer", "active")
            assert "customer:" + c.data["customer_id"] in c.entities
            assert c.attributes["country"] in ("DE", "US", "FR")

        @pytest.mark.stockroom("customer/active")
        def test_fails(stockroom):
            stockroom.take("customer/active")
            assert 1 == 2

        @pytest.fixture
        def buyer(stockroom):
            stockroom.take("customer/new")
            pytest.skip("skipped in setup, after the fixture took its data")

        def test_skipped_in_setup(buyer):
            pass

        @pytest.mark.xfail(reason="a known bug")
        def test_xfails(stockroom):
            stockroom.take("customer/active")  # not customer/new: the unused one above is ready again
            assert False

        def test_two_orders(stockroom):
            orders = stockroom.take("order/placed", count=2)
            assert isinstance(orders, list) and len(orders) == 2
            assert orders[0].data["customer_id"] != orders[1].data["customer_id"]
            customer = orders[0].inputs["customer"]  # the composed dataset's input
            assert customer.state_ref == "customer/active-with-payment"
            assert customer.data["customer_id"] == orders[0].data["customer_id"]
            assert "***" in repr(orders[0]) and customer.data["password"].reveal() not in repr(orders[0])

        @pytest.mark.skip(reason="never runs")
        @pytest.mark.stockroom("customer/active")
        def test_never_runs(stockroom):
            pass
        """
    )
    junit = inner.path / "junit.xml"
    result = inner.runpytest_subprocess(
        "-p", "no:cacheprovider", "--stockroom-reserve-wait", "60", f"--junitxml={junit}"
    )
    result.assert_outcomes(passed=2, failed=1, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(["*stockroom: started `stockroom agent` for this session*",
                                 "*stockroom: reserved 2 of 2 datasets declared by 2 markers*"])

    props = junit_properties(junit)
    assert [v.split(" ")[1] for v in props["test_passes"]] == ["customer/active"]
    assert [v.split(" ")[1] for v in props["test_two_orders"]] == ["order/placed", "order/placed"]
    assert props["test_never_runs"] == []
    status = {name: [demo_pool.status(i) for i in _ids(values)] for name, values in props.items()}
    assert status["test_passes"] == ["consumed"]
    assert status["test_fails"] == ["quarantined"]
    assert status["test_skipped_in_setup"] == ["ready"], "skipped before the test ran: unused"
    assert status["test_xfails"] == ["consumed"], "an expected failure counts as passed"
    assert status["test_two_orders"] == ["consumed", "consumed"]
    history = json.dumps(demo_pool.dataset(_ids(props["test_fails"])[0])["history"])
    assert "test_fails" in history, history


def test_xpass_setup_failure_and_call_phase_skip_settle_as_docs_plugins_pytest_md_says(inner, demo_pool):
    """The rows of docs/plugins/pytest.md, "How outcomes map", not run above:
    XPASS → passed, XPASS(strict) → failed, setup failed after a take → failed,
    skipped in the call phase after a take → passed."""
    inner.makepyfile(
        test_more_outcomes="""
        import pytest

        @pytest.mark.xfail(reason="thought broken")
        def test_xpasses(stockroom):
            stockroom.take("customer/active")

        @pytest.mark.xfail(reason="thought broken", strict=True)
        def test_xpasses_strict(stockroom):
            stockroom.take("customer/active")

        @pytest.fixture
        def broken(stockroom):
            stockroom.take("customer/active")
            raise RuntimeError("the fixture broke after its take")

        def test_setup_fails(broken):
            pass

        def test_skips_in_the_call(stockroom):
            stockroom.take("customer/active")
            pytest.skip("nothing to check today")
        """
    )
    junit = inner.path / "junit.xml"
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", f"--junitxml={junit}")
    result.assert_outcomes(xpassed=1, failed=1, errors=1, skipped=1)

    props = junit_properties(junit)
    taken = {name: _ids(values) for name, values in props.items()}
    assert all(len(ids) == 1 for ids in taken.values()) and len(taken) == 4, props
    status = {name: demo_pool.status(ids[0]) for name, ids in taken.items()}
    assert status == {
        "test_xpasses": "consumed",
        "test_xpasses_strict": "quarantined",
        "test_setup_fails": "quarantined",
        "test_skips_in_the_call": "consumed",
    }, status
    reasons = {
        name: json.dumps(demo_pool.dataset(ids[0])["history"]) for name, ids in taken.items()
    }
    assert "XPASS(strict)" in reasons["test_xpasses_strict"], reasons["test_xpasses_strict"]
    assert "setup failed: RuntimeError: the fixture broke after its take" in reasons["test_setup_fails"], (
        reasons["test_setup_fails"]
    )


XDIST_CONFTEST = """
import json, os, urllib.request

def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return
    request = urllib.request.Request(
        os.environ["STOCKROOM_AGENT_URL"] + "/v1/takes",
        headers={"Authorization": "Bearer " + os.environ["STOCKROOM_AGENT_TOKEN"]},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        with open("takes.json", "wb") as f:
            f.write(answer.read())
"""


def test_under_xdist_the_controller_reserves_once_and_each_worker_takes_its_own(inner, demo_pool):
    inner.makeconftest(XDIST_CONFTEST)
    inner.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.stockroom("customer/active")
        @pytest.mark.parametrize("n", range(6))
        def test_each(stockroom, n):
            c = stockroom.take("customer/active")
            assert c.data["customer_id"]
        """
    )
    junit = inner.path / "junit.xml"
    result = inner.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--stockroom-reserve-wait", "60", f"--junitxml={junit}"
    )
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*stockroom: reserved 6 of 6 datasets declared by 6 markers*"])
    takes = json.loads((inner.path / "takes.json").read_text())
    assert len(takes["takes"]) == 6
    assert {t["worker"] for t in takes["takes"]} == {"gw0", "gw1"}
    assert {t["source"] for t in takes["takes"]} == {"reserve"}, takes
    assert sum(r["count"] for r in takes["reserved"]) == 0, "reserved once, not once per worker"
    props = junit_properties(junit)
    assert len(props) == 6 and all(len(v) == 1 for v in props.values()), props
    ids = [i for v in props.values() for i in _ids(v)]
    assert len(set(ids)) == 6, "no two tests share a dataset"
    assert {demo_pool.status(i) for i in ids} == {"consumed"}


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_a_marker_naming_an_unknown_state_fails_at_collection(inner, xdist):
    inner.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.stockroom("customer/no-such-state")
        def test_x(stockroom):
            stockroom.take("customer/no-such-state")

        def test_y():
            pass
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", *xdist)
    assert result.ret == USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([
        "*a marker names a state the pool does not know*",
        "*test_bad.py::test_x: @pytest.mark.stockroom('customer/no-such-state')*",
        "*known states:*customer/active*",
    ])
    assert "passed" not in result.stdout.str(), "no test ran"


def test_a_take_of_an_unknown_state_fails_the_test_with_the_known_states(inner):
    inner.makepyfile(
        test_unknown="""
        def test_x(stockroom):
            stockroom.take("customer/no-such-state")
        """
    )
    started = time.monotonic()
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "--stockroom-wait", "30")
    result.assert_outcomes(failed=1)
    assert time.monotonic() - started < 30, "an unknown state fails at once, it does not wait"
    result.stdout.fnmatch_lines(["*customer/no-such-state*known states:*customer/active-with-payment*"])


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_without_an_agent_or_a_pool_the_session_fails_at_once(inner, monkeypatch, xdist):
    monkeypatch.delenv("STOCKROOM_POOL")
    inner.makepyfile(
        test_needs="""
        def test_x(stockroom):
            stockroom.take("customer/active")

        def test_y():
            pass
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", *xdist)
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(["*STOCKROOM_AGENT_URL is not set*stockroom run*pytest*"])
    assert "passed" not in result.stdout.str()


def test_a_session_without_stockroom_tests_needs_no_agent(inner, monkeypatch):
    monkeypatch.delenv("STOCKROOM_POOL")
    inner.makepyfile(test_plain="def test_y():\n    pass\n")
    inner.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def _start_agent(bin_dir: Path, env: dict, work: Path):
    ready = work / "agent.json"
    process = subprocess.Popen(
        [str(bin_dir / "stockroom"), "agent", "--ready-file", str(ready)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            info = json.loads(ready.read_text())
            break
        except (OSError, ValueError):
            assert process.poll() is None, "stockroom agent exited before it was ready"
            assert time.monotonic() < deadline, "stockroom agent was not ready in 30 s"
            time.sleep(0.02)
    assert oct(ready.stat().st_mode & 0o777) == "0o600"
    return process, info


def test_an_agent_that_went_away_fails_the_test_with_one_clear_line(inner, demo_pool, monkeypatch):
    work = Path(tempfile.mkdtemp(prefix="agent-gone-"))
    process, info = _start_agent(demo_pool.bin_dir, dict(os.environ), work)
    try:
        monkeypatch.setenv("STOCKROOM_AGENT_URL", info["url"])
        monkeypatch.setenv("STOCKROOM_AGENT_TOKEN", info["token"])
        monkeypatch.setenv("AGENT_PID", str(process.pid))
        inner.makepyfile(
            test_gone="""
            import os, signal, socket, time
            from urllib.parse import urlsplit

            def test_first(stockroom):
                stockroom.take("customer/new")

            def test_after_the_agent_ended(stockroom):
                os.kill(int(os.environ["AGENT_PID"]), signal.SIGTERM)
                url = urlsplit(os.environ["STOCKROOM_AGENT_URL"])
                deadline = time.monotonic() + 30
                while True:  # until the agent's port refuses connections
                    try:
                        socket.create_connection((url.hostname, url.port), timeout=1).close()
                    except OSError:
                        break
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                stockroom.take("customer/new")
            """
        )
        result = inner.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
        result.assert_outcomes(passed=1, failed=1)
        out = result.stdout.str()
        lines = [line for line in out.splitlines() if "does not answer" in line]
        assert lines and all("stockroom: the agent at" in line for line in lines), out
        assert "Traceback" not in out and "urllib" not in out, out
    finally:
        process.wait(timeout=30)


def test_secrets_stay_out_of_reprs_assertions_and_reports(inner, demo_pool):
    inner.makepyfile(
        test_secret="""
        import pytest

        @pytest.mark.parametrize("how", ["compare", "dict", "raise", "print"])
        def test_leaks(stockroom, how):
            c = stockroom.take("customer/active-with-payment")
            secret = c.data["password"]
            with open("secrets.txt", "a") as f:
                f.write(secret.reveal() + "\\n" + c.data["card"]["number"].reveal() + "\\n")
            assert "***" in repr(c) and secret.reveal() not in repr(c)
            assert secret == secret.reveal()  # usable as its value
            if how == "compare":
                assert secret == "not the password"
            if how == "dict":
                assert c.data == {}
            if how == "raise":
                raise RuntimeError("login failed for " + secret.reveal())
            print("the password is", secret.reveal(), c)
            assert False
        """
    )
    junit = inner.path / "junit.xml"
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "-vv", "-l", f"--junitxml={junit}")
    result.assert_outcomes(failed=4)
    secrets = [s for s in (inner.path / "secrets.txt").read_text().split() if s]
    assert len(secrets) == 8
    reports = result.stdout.str() + result.stderr.str() + junit.read_text()
    for secret in secrets:
        assert secret not in reports
    assert "***" in reports
    for dataset_id in _ids(v for vs in junit_properties(junit).values() for v in vs):
        history = json.dumps(demo_pool.dataset(dataset_id))
        assert not any(secret in history for secret in secrets)


def test_keyboard_interrupt_cancels_the_take(inner, demo_pool):
    inner.makepyfile(
        test_interrupt="""
        def test_interrupted(stockroom):
            c = stockroom.take("customer/new")
            open("taken.txt", "w").write(c.id)
            raise KeyboardInterrupt
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 2  # pytest's "interrupted"
    dataset_id = (inner.path / "taken.txt").read_text()
    assert demo_pool.status(dataset_id) == "quarantined"
    assert "cancel" in json.dumps(demo_pool.dataset(dataset_id)["history"]).lower()


def test_under_stockroom_run_the_job_file_and_the_agent_serve_one_session(inner, demo_pool):
    inner.makefile(
        ".toml",
        stockroom="""
        version = 1
        lease_ttl = "60s"

        [[dataset]]
        name = "buyer"
        type = "customer"
        state = "active"

        [[dataset]]
        name = "orders"
        type = "order"
        state = "placed"
        count = 2
        """,
    )
    inner.makepyfile(
        test_job="""
        import os
        import pytest

        def test_the_job_file_has_one_shape_for_any_count(stockroom):
            job = stockroom.datasets()
            assert len(job["buyer"]) == 1 and len(job["orders"]) == 2
            assert job.one("buyer").state_ref == "customer/active"
            assert job.lease_id == os.environ["STOCKROOM_LEASE_ID"]

        @pytest.mark.stockroom("customer/active")
        @pytest.mark.parametrize("n", range(4))
        def test_takes_its_own(stockroom, n):
            assert os.environ["STOCKROOM_AGENT_URL"].startswith("http://127.0.0.1:")
            c = stockroom.take("customer/active")
            assert c.id != stockroom.datasets().one("buyer").id
        """
    )
    junit = inner.path / "junit.xml"
    result = inner.run(
        str(demo_pool.bin_dir / "stockroom"), "run", "--manifest", str(inner.path / "stockroom.toml"),
        "--", sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2",
        "--stockroom-reserve-wait", "60", f"--junitxml={junit}", str(inner.path),
        timeout=300,
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "started `stockroom agent`" not in result.stdout.str(), "the sidecar's agent serves it"
    props = junit_properties(junit)
    ids = [i for v in props.values() for i in _ids(v)]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert {demo_pool.status(i) for i in ids} == {"consumed"}


def test_a_stockroom_agent_the_user_started_serves_the_session(inner, demo_pool, monkeypatch):
    """`stockroom agent` on its own: its ready file, takes settled, reserve leftovers unused."""
    work = Path(tempfile.mkdtemp(prefix="agent-own-"))
    process, info = _start_agent(demo_pool.bin_dir, dict(os.environ), work)
    monkeypatch.setenv("STOCKROOM_AGENT_URL", info["url"])
    monkeypatch.setenv("STOCKROOM_AGENT_TOKEN", info["token"])
    inner.makepyfile(
        test_own="""
        import pytest

        @pytest.mark.stockroom("customer/new", count=2)
        def test_takes_one_of_two(stockroom):
            stockroom.take("customer/new")
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "--stockroom-reserve-wait", "60")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*stockroom: reserved 2 of 2 datasets declared by 1 markers*"])
    assert process.poll() is None, "the session leaves an agent it did not start running"

    request = urllib.request.Request(
        info["url"] + "/v1/takes", headers={"Authorization": "Bearer " + info["token"]}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        book = json.load(answer)
    (take,) = book["takes"]
    assert (take["source"], take["outcome"]) == ("reserve", "passed"), take
    (taken_id,) = [d["id"] for d in take["datasets"]]
    assert [(r["type"], r["state"], r["count"]) for r in book["reserved"]] == [("customer", "new", 1)], book
    (reserve_lease,) = [held["lease_id"] for held in book["leases"] if held["for"] == "reserve"]
    reserved_ids = [d["id"] for d in demo_pool.get(f"/leases/{reserve_lease}")["datasets"]]
    assert len(reserved_ids) == 2 and taken_id in reserved_ids, reserved_ids
    (left_over,) = [i for i in reserved_ids if i != taken_id]
    assert demo_pool.status(left_over) == "leased", "held by the agent until it ends"

    process.stdin.close()
    assert process.wait(timeout=60) == 0
    assert demo_pool.status(taken_id) == "consumed", "the take was settled with the test's outcome"
    assert demo_pool.status(left_over) == "ready", "reserved but never taken: back to ready"

"""The pytest plugin (docs/plugins/pytest.md): the ``stockroom`` fixture and marker.

- The ``stockroom`` marker on the collected tests is summed into one
  ``POST /v1/reserve`` before any test runs, by the process that runs the
  session: plain pytest itself, or pytest-xdist's controller (its workers write
  what they collected to a session directory; the controller reads the first).
  A marker naming a state the pool does not know stops the session there.
- ``stockroom.take(...)`` takes datasets for the running test; each take is
  settled (``done``) with the test's outcome when the test's fixtures are torn
  down: the call phase's result as pytest judged it (see ``outcome_of``).
- Each taken dataset becomes the JUnit property ``stockroom.dataset`` of its
  test case (``user_properties``, which pytest-xdist carries to the controller).
- With no agent in the environment, the session starts ``stockroom agent``
  when ``STOCKROOM_POOL`` is set and ``stockroom`` is on PATH, else it fails at
  once saying how to run the tests under ``stockroom run``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import reprlib
import shutil
import tempfile
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import pytest

from . import launcher
from .client import (
    URL_ENV,
    TOKEN_ENV,
    AgentClient,
    NoAgent,
    StockroomError,
    UnknownState,
    parse_state_ref,
)
from .dataset import Dataset, Secret
from .jobfile import JobDatasets, datasets as read_datasets_file

PROPERTY = "stockroom.dataset"
DEFAULT_WAIT = 60.0
_STATE = pytest.StashKey["_Session"]()
_ITEM = pytest.StashKey["_ItemRecord"]()
REASON_LIMIT = 300


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stockroom", "Stockroom test data (docs/plugins/pytest.md)")
    group.addoption(
        "--stockroom-wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"how long a take waits for stock before the test fails (default {DEFAULT_WAIT:.0f})",
    )
    group.addoption(
        "--stockroom-reserve-wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="how long the session's reserve may wait for stock to appear (default 0: what is "
        "ready now; the rest is taken from the pool when the tests ask)",
    )
    group.addoption(
        "--stockroom-no-reserve",
        action="store_true",
        default=False,
        help="do not reserve what the stockroom markers declare at session start",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stockroom(state_ref, count=1, **where): datasets this test takes through the "
        "stockroom fixture, reserved for the whole session before any test runs",
    )
    state = _Session(config)
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "stockroom-session")


class _ItemRecord:
    """What one test took and how its phases went."""

    def __init__(self) -> None:
        self.takes: List[Tuple[str, List[Dataset]]] = []
        self.settled: set = set()
        self.reports: Dict[str, pytest.TestReport] = {}
        self.crash: Dict[str, str] = {}
        self.secrets: List[str] = []


def _where_key(where: Dict[str, Any]) -> str:
    return json.dumps(where, sort_keys=True)


def _marks_of(item: pytest.Item) -> Tuple[List[Dict[str, Any]], List[str]]:
    marks, errors = [], []
    for mark in item.iter_markers("stockroom"):
        if len(mark.args) != 1:
            errors.append(
                f"{item.nodeid}: @pytest.mark.stockroom takes one state, 'type/state' "
                f"(e.g. 'customer/active'), got {len(mark.args)} positional arguments"
            )
            continue
        kwargs = dict(mark.kwargs)
        count = kwargs.pop("count", 1)
        where = kwargs.pop("where", None) or {}
        where.update(kwargs)
        try:
            type_name, state = parse_state_ref(mark.args[0])
        except ValueError as e:
            errors.append(f"{item.nodeid}: @pytest.mark.stockroom: {e}")
            continue
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            errors.append(f"{item.nodeid}: @pytest.mark.stockroom count must be 1 or more, not {count!r}")
            continue
        marks.append(
            {"test": item.nodeid, "type": type_name, "state": state, "where": where, "count": count}
        )
    return marks, errors


def summarize(items: List[pytest.Item]) -> Dict[str, Any]:
    """What the collected tests need: who uses the fixture, what the markers declare."""
    needs, marks, errors = [], [], []
    for item in items:
        if any(not m.args and not m.kwargs.get("condition") for m in item.iter_markers("skip")):
            continue  # never runs: reserves nothing, needs no agent
        item_marks, item_errors = _marks_of(item)
        marks.extend(item_marks)
        errors.extend(item_errors)
        if item_marks or "stockroom" in getattr(item, "fixturenames", ()):
            needs.append(item.nodeid)
    return {"needs": needs, "marks": marks, "errors": errors}


def reserve_items(marks: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The markers summed per (type, state, where), in first-seen order."""
    total: "OrderedDict[Tuple[str, str, str], Dict[str, Any]]" = OrderedDict()
    for m in marks:
        key = (m["type"], m["state"], _where_key(m["where"]))
        if key not in total:
            total[key] = {"type": m["type"], "state": m["state"], "where": m["where"], "count": 0}
        total[key]["count"] += m["count"]
    return list(total.values())


def outcome_of(record: _ItemRecord) -> Tuple[str, str]:
    """The outcome a test's takes are done with, and why.

    call phase passed (also XPASS) → passed; failed (also XPASS(strict)) → failed;
    skipped in the call phase or xfailed → passed (the test ran as pytest expected;
    the data was used, so it is consumed, not handed out again); setup failed after
    the take → failed; skipped before the test body ran → unused; no verdict at all
    (KeyboardInterrupt, a crash) → cancelled.
    """
    call = record.reports.get("call")
    setup = record.reports.get("setup")
    if call is not None:
        if call.passed:
            return "passed", ("xpassed" if hasattr(call, "wasxfail") else "")
        if call.failed:
            return "failed", record.crash.get("call", "")
        if hasattr(call, "wasxfail"):
            return "passed", f"xfailed: {call.wasxfail}".rstrip(": ")
        return "passed", "skipped after the take: " + record.crash.get("call", "")
    if setup is not None and setup.failed:
        return "failed", "setup failed: " + record.crash.get("setup", "")
    if setup is not None and setup.skipped:
        return "unused", "skipped before the test ran"
    return "cancelled", "the test was interrupted"


def _crash_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text, where = str(crash.message), f" ({os.path.basename(str(crash.path))}:{crash.lineno})"
    elif isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        text, where = str(report.longrepr[2]), ""
    else:
        text, where = str(report.longrepr or ""), ""
    lines = text.strip().splitlines()
    return (lines[0] if lines else "")[:REASON_LIMIT] + where


def _scrub(text: str, secrets: List[str]) -> str:
    for value in sorted(set(secrets), key=len, reverse=True):
        if value:
            text = text.replace(value, "***")
    return text


def _scrub_obj(value: Any, secrets: List[str], depth: int) -> Any:
    """``value`` (a report's longrepr: strings, tuples, lists, pytest's repr
    dataclasses) with every secret text replaced, in place where it is mutable."""
    if isinstance(value, str):
        return _scrub(value, secrets)
    if depth > 12:
        return value
    if isinstance(value, list):
        value[:] = [_scrub_obj(v, secrets, depth + 1) for v in value]
        return value
    if isinstance(value, tuple):
        return tuple(_scrub_obj(v, secrets, depth + 1) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            current = getattr(value, field.name, None)
            clean = _scrub_obj(current, secrets, depth + 1)
            if clean is not current:
                try:
                    setattr(value, field.name, clean)
                except (AttributeError, dataclasses.FrozenInstanceError):
                    pass
    return value


class _Session:
    """The plugin's per-process state, registered as a plugin for its hooks."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        workerinput = getattr(config, "workerinput", None)
        self.is_worker = workerinput is not None
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.dir: Optional[str] = workerinput.get("stockroom_dir") if workerinput else None
        self.owns_dir = False
        self.planned = False
        self.agent: Optional[launcher.AgentProcess] = None
        self._client: Optional[AgentClient] = None
        self.pending: Dict[str, Tuple[_ItemRecord, str]] = {}
        self.interrupted = False
        self.taken_datasets = 0
        self.tests_with_data = 0

    # --- session directory shared with pytest-xdist workers -----------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if not self.is_worker:
            self.dir = tempfile.mkdtemp(prefix="pytest-stockroom-session-")
            self.owns_dir = True

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["stockroom_dir"] = self.dir

    # --- the session's plan: agent, reserve, marker check -------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        summary = summarize(session.items)
        if self.is_worker:
            if self.dir:
                path = os.path.join(self.dir, f"collected-{self.worker}.json")
                with open(path + ".tmp", "w", encoding="utf-8") as f:
                    json.dump(summary, f)
                os.replace(path + ".tmp", path)
            return
        if self.config.option.collectonly:
            if summary["errors"]:
                raise pytest.UsageError("\n".join(summary["errors"]))
            return
        self.plan(summary)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: List[str]) -> None:
        if self.planned or not self.dir:
            return
        path = os.path.join(self.dir, f"collected-{node.gateway.id}.json")
        try:
            with open(path, encoding="utf-8") as f:
                summary = json.load(f)
        except (OSError, ValueError):
            return  # this worker has not got the plugin's summary; wait for another
        self.plan(summary)

    def plan(self, summary: Dict[str, Any]) -> None:
        self.planned = True
        if summary["errors"]:
            raise pytest.UsageError("\n".join(summary["errors"]))
        if not summary["needs"]:
            return
        try:
            client = self.ensure_agent()
        except StockroomError as e:
            raise pytest.UsageError(
                f"{e}\n(the tests that need it: {', '.join(summary['needs'][:5])}"
                + (", ..." if len(summary["needs"]) > 5 else "")
                + ")"
            ) from None
        items = reserve_items(summary["marks"])
        if not items or self.config.getoption("stockroom_no_reserve"):
            return
        try:
            answer = client.reserve(items, wait_seconds=self.config.getoption("stockroom_reserve_wait"))
        except UnknownState as e:
            known = set(e.known_states)
            bad = [
                f"  {m['test']}: @pytest.mark.stockroom('{m['type']}/{m['state']}')"
                for m in summary["marks"]
                if f"{m['type']}/{m['state']}" not in known
            ]
            raise pytest.UsageError(
                "stockroom: a marker names a state the pool does not know:\n"
                + ("\n".join(bad) + "\n" if bad else "")
                + f"known states: {', '.join(e.known_states) or '(none)'}"
            ) from None
        except StockroomError as e:
            raise pytest.UsageError(f"{e} (while reserving what the stockroom markers declare)") from None
        reserved = answer.get("reserved") or []
        wanted = sum(i["count"] for i in items)
        got = sum(int(r.get("count") or 0) for r in reserved if isinstance(r, dict))
        line = f"stockroom: reserved {got} of {wanted} datasets declared by {len(summary['marks'])} markers"
        if answer.get("shortfall"):
            line += f"; shortfall (taken from the pool when the tests ask): {json.dumps(answer['shortfall'])}"
        self._write_line(line)

    def _write_line(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)

    def ensure_agent(self) -> AgentClient:
        """The session's agent: from the environment, else one this session starts."""
        if self._client is not None:
            return self._client
        if os.environ.get(URL_ENV):
            self._client = AgentClient.from_env()
            return self._client
        info_path = os.path.join(self.dir, "agent.json") if self.dir else None
        if self.is_worker:
            if info_path and os.path.exists(info_path):
                with open(info_path, encoding="utf-8") as f:
                    info = json.load(f)
                os.environ[URL_ENV], os.environ[TOKEN_ENV] = info["url"], info["token"]
                self._client = AgentClient(info["url"], info["token"])
                return self._client
            raise NoAgent(
                f"stockroom: no agent for this worker: {URL_ENV} is not set and the session "
                "started none; run the tests under `stockroom run -- pytest ...`"
            )
        binary = launcher.can_start()
        if binary is None:
            raise NoAgent(
                f"stockroom: no agent for these tests: {URL_ENV} is not set. Run them under the "
                "sidecar, `stockroom run --manifest stockroom.toml -- pytest ...`, which serves the "
                "agent; or set STOCKROOM_POOL (and STOCKROOM_TOKEN) with `stockroom` on PATH and "
                "the plugin starts `stockroom agent` for the session"
            )
        self.agent = launcher.start_agent(binary)
        os.environ[URL_ENV], os.environ[TOKEN_ENV] = self.agent.url, self.agent.token
        if info_path:
            fd = os.open(info_path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"url": self.agent.url, "token": self.agent.token}, f)
            os.replace(info_path + ".tmp", info_path)
        self._write_line(f"stockroom: started `stockroom agent` for this session at {self.agent.url}")
        self._client = AgentClient(self.agent.url, self.agent.token)
        return self._client

    # --- per test ------------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        record = item.stash.get(_ITEM, None)
        if record is None:
            return
        record.reports[report.when] = report
        record.crash[report.when] = _scrub(_crash_line(report), record.secrets)
        if record.secrets:
            self._scrub_report(report, record.secrets)

    @staticmethod
    def _scrub_report(report: pytest.TestReport, secrets: List[str]) -> None:
        if report.longrepr is not None and any(v and v in str(report.longrepr) for v in secrets):
            report.longrepr = _scrub_obj(report.longrepr, secrets, 0)
        report.sections = [(title, _scrub(body, secrets)) for title, body in report.sections]

    def settle(self, record: _ItemRecord) -> None:
        outcome, reason = outcome_of(record)
        if self.interrupted and outcome == "cancelled":
            reason = "the session was interrupted (KeyboardInterrupt)"
        reason = _scrub(reason, record.secrets)
        errors = []
        for take_id, _ in record.takes:
            if take_id in record.settled:
                continue
            try:
                self.ensure_agent().done(take_id, outcome, reason or None)
            except StockroomError as e:
                errors.append(str(e))
            record.settled.add(take_id)
            self.pending.pop(take_id, None)
        if errors:
            pytest.fail(errors[0], pytrace=False)

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.interrupted = True

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Fixture teardown has run by now; anything left had no teardown (a crash).
        for take_id, (record, _) in list(self.pending.items()):
            if take_id not in record.settled:
                try:
                    self.ensure_agent().done(take_id, "cancelled", "the test's teardown never ran")
                except StockroomError:
                    pass  # the agent settles takes not done itself when it ends
                record.settled.add(take_id)
        self.pending.clear()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" and not self.is_worker:
            n = sum(1 for name, _ in report.user_properties if name == PROPERTY)
            if n:
                self.taken_datasets += n
                self.tests_with_data += 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.taken_datasets:
            terminalreporter.write_line(
                f"stockroom: {self.taken_datasets} datasets taken by {self.tests_with_data} tests "
                f"(JUnit property {PROPERTY})"
            )

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None
            for name in (URL_ENV, TOKEN_ENV):
                os.environ.pop(name, None)
        if self.owns_dir and self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- secrets out of assertion explanations --------------------------------

    def pytest_assertrepr_compare(self, config: pytest.Config, op: str, left: Any, right: Any):
        if isinstance(left, Secret) or isinstance(right, Secret):
            short = reprlib.Repr()
            short.maxstring = short.maxother = 80
            return [
                f"{short.repr(left)} {op} {short.repr(right)}",
                "a secret field of a Stockroom dataset is compared: its value is not shown",
            ]
        return None


class StockroomFixture:
    """What the ``stockroom`` fixture gives a test."""

    def __init__(self, session: _Session, item: pytest.Item, record: _ItemRecord) -> None:
        self._session = session
        self._item = item
        self._record = record
        wait = session.config.getoption("stockroom_wait")
        self.wait_seconds = DEFAULT_WAIT if wait is None else wait

    def __repr__(self) -> str:
        ids = [d.id for _, ds in self._record.takes for d in ds]
        return f"<stockroom fixture of {self._item.nodeid}: {ids}>"

    def take(self, state_ref: str, count: int = 1, *, wait_seconds: Optional[float] = None, **where: Any):
        """Takes ``count`` datasets in ``state_ref`` (``"type/state"``) whose attributes
        match ``where`` exactly: one :class:`Dataset`, or a list when ``count > 1``."""
        try:
            type_name, state = parse_state_ref(state_ref)
        except ValueError as e:
            pytest.fail(f"stockroom: {e}", pytrace=False)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            pytest.fail(f"stockroom: count must be 1 or more, not {count!r}", pytrace=False)
        name = "".join(c if c.isalnum() else "_" for c in f"{type_name}_{state}").lower()
        if not name[:1].isalpha():
            name = "d_" + name
        item = {"name": name, "type": type_name, "state": state, "where": where, "count": count}
        wait = self.wait_seconds if wait_seconds is None else wait_seconds
        answer, error = None, None
        try:
            client = self._session.ensure_agent()
            answer = client.take([item], test=self._item.nodeid, worker=self._session.worker, wait_seconds=wait)
        except StockroomError as e:
            error = str(e)
        if answer is None:
            pytest.fail(error or "stockroom: the take failed", pytrace=False)
        self._record.takes.append((answer.take_id, answer.datasets))
        self._session.pending[answer.take_id] = (self._record, self._item.nodeid)
        for dataset in answer.datasets:
            self._item.user_properties.append((PROPERTY, f"{dataset.id} {dataset.state_ref}"))
            self._record.secrets.extend(dataset.secret_values())
        if count == 1:
            return answer.datasets[0] if answer.datasets else None
        return answer.datasets

    def datasets(self, path: Optional[str] = None) -> JobDatasets:
        """The job-level datasets file of ``stockroom run`` (one list per name, any count)."""
        error = None
        try:
            return read_datasets_file(path)
        except StockroomError as e:
            error = str(e)
        pytest.fail(error, pytrace=False)


@pytest.fixture
def stockroom(request: pytest.FixtureRequest):
    """Takes datasets for this test: ``stockroom.take("customer/active", country="DE")``."""
    session: _Session = request.config.stash[_STATE]
    record = request.node.stash.setdefault(_ITEM, _ItemRecord())
    yield StockroomFixture(session, request.node, record)
    session.settle(record)

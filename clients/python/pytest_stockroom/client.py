"""The agent's HTTP API (docs/sidecar.md, "The agent"), over the standard library.

``stockroom run`` serves the agent for the command it runs and puts
``STOCKROOM_AGENT_URL`` and ``STOCKROOM_AGENT_TOKEN`` in its environment;
``stockroom agent`` serves one on its own. Errors are problem+json; each kind
becomes one exception class whose message is one line saying what to do.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .dataset import Dataset

URL_ENV = "STOCKROOM_AGENT_URL"
TOKEN_ENV = "STOCKROOM_AGENT_TOKEN"


class StockroomError(Exception):
    """Anything that went wrong talking to the agent; ``str()`` is one line."""


class AgentGone(StockroomError):
    """The agent does not answer: the ``stockroom run`` or ``stockroom agent`` ended."""


class Unauthorized(StockroomError):
    """The agent refused the token (401)."""


class UnknownState(StockroomError):
    """The pool has no such type or state; ``known_states`` lists what it has."""

    def __init__(self, message: str, known_states: Sequence[str]) -> None:
        super().__init__(message)
        self.known_states = list(known_states)


class NoStock(StockroomError):
    """Not enough stock within the wait; ``shortfall`` says what was missing."""

    def __init__(self, message: str, shortfall: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(message)
        self.shortfall = list(shortfall)


class NoAgent(StockroomError):
    """No agent in the environment."""


def parse_state_ref(state_ref: str) -> Tuple[str, str]:
    """``"customer/active"`` → ``("customer", "active")``; ValueError otherwise."""
    if not isinstance(state_ref, str):
        raise ValueError(f"a state is written 'type/state', not {state_ref!r}")
    type_name, sep, state = state_ref.partition("/")
    if not sep or not type_name or not state or "/" in state:
        raise ValueError(
            f"a state is written 'type/state' (e.g. 'customer/active'), not {state_ref!r}"
        )
    return type_name, state


def _state_names(known: Sequence[Any]) -> List[str]:
    names = []
    for entry in known:
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, Mapping) and "type" in entry and "state" in entry:
            names.append(f"{entry['type']}/{entry['state']}")
        else:
            names.append(str(entry))
    return names


class Take:
    """One answered take: its ``take_id`` and datasets."""

    def __init__(self, take_id: str, datasets: List[Dataset]) -> None:
        self.take_id = take_id
        self.datasets = datasets

    def __repr__(self) -> str:
        return f"Take(take_id={self.take_id!r}, datasets={self.datasets!r})"


class AgentClient:
    """A client of one agent. The token is kept out of ``repr``."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "AgentClient":
        env = os.environ if environ is None else environ
        url = env.get(URL_ENV)
        if not url:
            raise NoAgent(
                f"stockroom: no agent: {URL_ENV} is not set; run the tests under "
                "`stockroom run -- pytest ...`, or set STOCKROOM_POOL with `stockroom` on PATH "
                "so the plugin starts `stockroom agent` itself"
            )
        return cls(url, env.get(TOKEN_ENV, ""))

    def __repr__(self) -> str:
        return f"AgentClient(url={self.url!r})"

    def _call(self, method: str, path: str, body: Any = None, timeout: Optional[float] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as e:
            raise self._problem(e) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise AgentGone(
                f"stockroom: the agent at {self.url} does not answer ({reason}); "
                "the `stockroom run` or `stockroom agent` serving these tests has ended"
            ) from None
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise StockroomError(
                f"stockroom: the agent at {self.url} answered {method} {path} with non-JSON"
            ) from None

    def _problem(self, error: urllib.error.HTTPError) -> StockroomError:
        try:
            problem = json.loads(error.read() or b"{}")
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        kind = str(problem.get("type", "")).rsplit("/", 1)[-1]
        detail = problem.get("detail") or problem.get("title") or error.reason
        if error.code == 401 or kind == "unauthorized":
            return Unauthorized(
                f"stockroom: the agent at {self.url} refused the token ({detail}); "
                f"{TOKEN_ENV} must be the one `stockroom run` or `stockroom agent` gave"
            )
        if kind == "unknown-state":
            known = _state_names(problem.get("known_states") or [])
            return UnknownState(
                f"stockroom: {detail}; known states: {', '.join(known) or '(none)'}", known
            )
        if kind == "no-stock":
            shortfall = problem.get("shortfall") or []
            parts = []
            for s in shortfall:
                if isinstance(s, Mapping):
                    what = s.get("name") or s.get("state") or "?"
                    parts.append(
                        f"{what}: wanted {s.get('wanted')}, ready {s.get('ready')}, "
                        f"generating {s.get('generating')}"
                    )
            return NoStock(
                f"stockroom: no stock in time ({detail})"
                + (f": {'; '.join(parts)}" if parts else ""),
                shortfall,
            )
        return StockroomError(f"stockroom: the agent answered {error.code}: {detail}")

    def reserve(self, items: Sequence[Mapping[str, Any]], wait_seconds: float = 0) -> Dict[str, Any]:
        """``POST /v1/reserve``: lease ahead what the tests will take (best effort),
        waiting up to ``wait_seconds`` for all of it before taking what is there."""
        wait = max(0, int(round(wait_seconds)))
        body: Dict[str, Any] = {"items": list(items)}
        if wait:
            body["wait_seconds"] = wait
        return self._call("POST", "/v1/reserve", body, timeout=wait + 120)

    def take(
        self,
        items: Sequence[Mapping[str, Any]],
        test: Optional[str] = None,
        worker: Optional[str] = None,
        wait_seconds: float = 60,
    ) -> Take:
        """``POST /v1/take``: all of ``items`` or nothing, waiting up to ``wait_seconds``."""
        wait = max(0, int(round(wait_seconds)))
        body: Dict[str, Any] = {"items": list(items), "wait_seconds": wait}
        if test is not None:
            body["test"] = test
        if worker is not None:
            body["worker"] = worker
        answer = self._call("POST", "/v1/take", body, timeout=wait + 30)
        datasets = [Dataset.from_json(d) for d in answer.get("datasets") or []]
        return Take(str(answer.get("take_id", "")), datasets)

    def done(self, take_id: str, outcome: str, reason: Optional[str] = None) -> Dict[str, Any]:
        """``POST /v1/takes/{id}/done``: settle a take (repeating it is harmless)."""
        body: Dict[str, Any] = {"outcome": outcome}
        if reason:
            body["reason"] = reason
        return self._call("POST", f"/v1/takes/{take_id}/done", body)

    def takes(self) -> Dict[str, Any]:
        """``GET /v1/takes``: what the job holds, per take."""
        return self._call("GET", "/v1/takes")

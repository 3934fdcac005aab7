"""Starts ``stockroom agent`` for a session that has no agent (docs/plugins/pytest.md).

``stockroom agent --ready-file PATH`` writes ``{"url", "token"}`` (mode 0600)
once it listens and runs until its stdin closes (or SIGTERM/SIGINT); then it
settles what is left: takes not done are cancelled, reserved datasets never
taken go back to ready. The pool comes from ``STOCKROOM_POOL`` and its token
from ``STOCKROOM_TOKEN``, both read by ``stockroom`` itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Optional

from .client import StockroomError

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


class AgentProcess:
    """A ``stockroom agent`` child of this session."""

    def __init__(self, process: subprocess.Popen, url: str, token: str, log_path: str, work: str):
        self.process = process
        self.url = url
        self.token = token
        self.log_path = log_path
        self._work = work

    def __repr__(self) -> str:
        return f"AgentProcess(pid={self.process.pid}, url={self.url!r})"

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> Optional[int]:
        """Closes the agent's stdin (it settles and exits); SIGTERM after a deadline."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                code = self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        shutil.rmtree(self._work, ignore_errors=True)
        return code


def can_start() -> Optional[str]:
    """The path of ``stockroom`` when the plugin may start an agent, else None."""
    if not os.environ.get("STOCKROOM_POOL"):
        return None
    return shutil.which("stockroom")


def start_agent(binary: str) -> AgentProcess:
    """Starts ``stockroom agent`` and waits (bounded) for its ready file."""
    work = tempfile.mkdtemp(prefix="pytest-stockroom-")
    ready = os.path.join(work, "agent.json")
    log_path = os.path.join(work, "agent.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "agent", "--ready-file", ready],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + READY_TIMEOUT
    agent = AgentProcess(process, "", "", log_path, work)
    while True:
        if os.path.exists(ready):
            try:
                with open(ready, encoding="utf-8") as f:
                    info = json.load(f)
                agent.url, agent.token = info["url"], info.get("token", "")
                return agent
            except (ValueError, KeyError, OSError):
                pass  # written but not complete yet: read it again
        code = process.poll()
        if code is not None:
            tail = agent.log_tail()
            shutil.rmtree(work, ignore_errors=True)
            raise StockroomError(
                f"stockroom: `{binary} agent` exited with {code} before it was ready "
                f"(STOCKROOM_POOL={os.environ.get('STOCKROOM_POOL')}); its output:\n{tail}"
            )
        if time.monotonic() > deadline:
            agent.stop()
            raise StockroomError(
                f"stockroom: `{binary} agent` was not ready within {READY_TIMEOUT:.0f} s; "
                f"its output:\n{agent.log_tail()}"
            )
        time.sleep(0.02)

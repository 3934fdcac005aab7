"""The plugin's own suite: real inner pytest sessions (pytester) against the real
`stockroom` sidecar/agent and a real demo pool (`stockroom-pool demo`).

The binaries come from $STOCKROOM_BIN_DIR, else the repository's target/debug
(`cargo build -p stockroom -p stockroom-pool`); without them the suite fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[3]


def _bin_dir() -> Path:
    bin_dir = Path(os.environ.get("STOCKROOM_BIN_DIR") or REPO / "target" / "debug")
    for name in ("stockroom", "stockroom-pool"):
        if not (bin_dir / name).is_file():
            pytest.fail(
                f"{bin_dir / name} is missing: run `cargo build -p stockroom -p stockroom-pool` "
                "or set STOCKROOM_BIN_DIR",
                pytrace=False,
            )
    return bin_dir


class DemoPool:
    def __init__(self, url: str, bin_dir: Path, log: Path) -> None:
        self.url = url
        self.bin_dir = bin_dir
        self.log = log

    def get(self, path: str):
        with urllib.request.urlopen(self.url + "/api/v1" + path, timeout=10) as answer:
            return json.load(answer)

    def dataset(self, dataset_id: str):
        return self.get(f"/datasets/{dataset_id}")

    def status(self, dataset_id: str) -> str:
        """The dataset's settled status. A dataset back in stock may be being
        verified or reset by its generator (docs/generators.md, "Lifecycle
        calls"), when it reads `generating`: wait, with a deadline, for that
        to end."""
        deadline = time.monotonic() + 20
        status = self.dataset(dataset_id)["status"]
        while status == "generating" and time.monotonic() < deadline:
            time.sleep(0.1)  # poll interval inside a deadline
            status = self.dataset(dataset_id)["status"]
        return status

    def ready(self, type_name: str, state: str) -> int:
        for t in self.get("/catalog")["types"]:
            for s in t["states"]:
                if t["type"] == type_name and s["state"] == state:
                    return int(s["stock"]["ready"])
        return 0

    def wait_for_stock(self, wanted: dict, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not all(self.ready(*k.split("/")) >= n for k, n in wanted.items()):
            if time.monotonic() > deadline:
                pytest.fail(f"the demo pool did not reach {wanted} in {seconds} s; log:\n{self.log.read_text()}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def demo_pool():
    bin_dir = _bin_dir()
    work = Path(tempfile.mkdtemp(prefix="pytest-stockroom-tests-"))
    ready = work / "addr"
    log = work / "pool.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(bin_dir / "stockroom-pool"), "demo", "--listen", "127.0.0.1:0", "--shop-listen", "127.0.0.1:0",
             "--ready-file", str(ready), "--latency", "20ms"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo pool did not start; its log:\n{log.read_text()}")
            time.sleep(0.05)
        pool = DemoPool("http://" + ready.read_text().strip(), bin_dir, log)
        while True:
            try:
                urllib.request.urlopen(pool.url + "/readyz", timeout=5).close()
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"the demo pool is not ready; its log:\n{log.read_text()}")
                time.sleep(0.05)
        yield pool
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def inner(pytester: pytest.Pytester, demo_pool: DemoPool, monkeypatch: pytest.MonkeyPatch):
    """A pytester whose inner sessions see the demo pool as a user's CI would:
    STOCKROOM_POOL set and `stockroom` on PATH, no agent yet."""
    for name in list(os.environ):
        if name.startswith("STOCKROOM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STOCKROOM_POOL", demo_pool.url)
    monkeypatch.setenv("PATH", f"{demo_pool.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    return pytester


def junit_properties(path: Path) -> dict:
    """{testcase name: [stockroom.dataset values]} from a JUnit XML file."""
    import xml.etree.ElementTree as ET

    found = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        found[case.get("name")] = [
            p.get("value") for p in case.iter("property") if p.get("name") == "stockroom.dataset"
        ]
    return found

"""The job-level datasets file (``STOCKROOM_DATASETS_FILE``, docs/sidecar.md).

The file gives a dataset of ``count = 1`` as an object and one of ``count > 1``
as a list; :func:`datasets` gives both as a list, so changing a count in the
manifest changes no reader.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional

from .client import StockroomError
from .dataset import Dataset

FILE_ENV = "STOCKROOM_DATASETS_FILE"


class JobDatasets(Mapping[str, List[Dataset]]):
    """The job's datasets by manifest name, each a list (one shape for any count)."""

    def __init__(self, body: Mapping[str, Any], path: str) -> None:
        self.path = path
        self.lease_id: Optional[str] = body.get("lease_id")
        self.expires_at: Optional[str] = body.get("expires_at")
        self.shard: Dict[str, Any] = dict(body.get("shard") or {})
        self._by_name: Dict[str, List[Dataset]] = {}
        for name, value in (body.get("datasets") or {}).items():
            items = value if isinstance(value, list) else [value]
            datasets = []
            for index, item in enumerate(items):
                item = dict(item)
                item["name"] = name
                item["index"] = index
                datasets.append(Dataset.from_json(item))
            self._by_name[name] = datasets

    def __getitem__(self, name: str) -> List[Dataset]:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"the datasets file {self.path} has no dataset {name!r}; it has: "
                f"{', '.join(sorted(self._by_name)) or '(none)'}"
            ) from None

    def one(self, name: str) -> Dataset:
        """The first (for ``count = 1`` the only) dataset named ``name``."""
        return self[name][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"JobDatasets(lease_id={self.lease_id!r}, datasets={self._by_name!r})"


def datasets(path: Optional[str] = None) -> JobDatasets:
    """Reads the job's datasets file (``path``, else ``$STOCKROOM_DATASETS_FILE``)."""
    path = path or os.environ.get(FILE_ENV)
    if not path:
        raise StockroomError(
            f"stockroom: {FILE_ENV} is not set; run the tests under "
            "`stockroom run --manifest stockroom.toml -- pytest ...` for the job's datasets"
        )
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError) as e:
        raise StockroomError(f"stockroom: cannot read the datasets file {path}: {e}") from None
    return JobDatasets(body, path)

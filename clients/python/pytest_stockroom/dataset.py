"""A dataset as a test sees it (docs/plugins/pytest.md, "What a test gets").

Secret fields (the dataset's ``secret_fields``, dotted paths such as
``password`` or ``card.number``) keep their value for the code that uses them,
but never show it: string secrets become :class:`Secret`, a ``str`` whose
``repr`` is ``'***'``, and :meth:`Dataset.__repr__` masks every secret field
whatever its type. The plugin's assertion hook keeps them out of pytest's
assertion explanations too.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Iterable, List, Mapping, Optional

MASK = "***"


class Secret(str):
    """A secret string: equal to and usable as its value, shown as ``'***'``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)

    def reveal(self) -> str:
        """The plain value (a ``str`` whose repr shows it: handle with care)."""
        return str.__str__(self)


def _split(path: str) -> List[str]:
    return [part for part in path.split(".") if part]


def _walk(data: Any, parts: List[str]):
    """The container holding the last part of ``parts`` in ``data``, or None."""
    node = data
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    if isinstance(node, dict) and parts and parts[-1] in node:
        return node
    return None


def _wrap_secrets(data: Any, secret_fields: Iterable[str]) -> Any:
    data = copy.deepcopy(data)
    for path in secret_fields:
        parts = _split(path)
        holder = _walk(data, parts)
        if holder is not None and isinstance(holder[parts[-1]], str):
            holder[parts[-1]] = Secret(holder[parts[-1]])
    return data


def _masked(data: Any, secret_fields: Iterable[str]) -> Any:
    data = copy.deepcopy(data)
    for path in secret_fields:
        parts = _split(path)
        holder = _walk(data, parts)
        if holder is not None:
            holder[parts[-1]] = MASK
    return data


def secret_values(data: Any, secret_fields: Iterable[str]) -> List[str]:
    """The text of every secret value in ``data`` (to scrub it from reports)."""
    found = []
    for path in secret_fields:
        parts = _split(path)
        holder = _walk(data, parts)
        if holder is not None and holder[parts[-1]] not in (None, ""):
            found.append(str.__str__(holder[parts[-1]]) if isinstance(holder[parts[-1]], str)
                         else str(holder[parts[-1]]))
    return found


class Dataset:
    """One dataset taken for a test: ``id``, ``type``, ``state``, ``data``,
    ``attributes``, ``entities``, ``inputs`` (composed datasets by name) and
    ``secret_fields``. ``name`` and ``index`` say where it sits in its take."""

    __slots__ = (
        "id",
        "type",
        "state",
        "data",
        "attributes",
        "entities",
        "inputs",
        "secret_fields",
        "name",
        "index",
    )

    def __init__(
        self,
        id: str,
        type: str,
        state: str,
        data: Any = None,
        attributes: Optional[Mapping[str, Any]] = None,
        entities: Optional[Iterable[str]] = None,
        inputs: Optional[Mapping[str, "Dataset"]] = None,
        secret_fields: Optional[Iterable[str]] = None,
        name: Optional[str] = None,
        index: int = 0,
    ) -> None:
        self.id = id
        self.type = type
        self.state = state
        self.secret_fields = list(secret_fields or [])
        self.data = _wrap_secrets(data if data is not None else {}, self.secret_fields)
        self.attributes = dict(attributes or {})
        self.entities = list(entities or [])
        self.inputs = dict(inputs or {})
        self.name = name
        self.index = index

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "Dataset":
        """A dataset from the agent's take answer, a lease answer or the datasets file."""
        inputs = {
            name: cls.from_json(value)
            for name, value in (body.get("inputs") or {}).items()
            if isinstance(value, Mapping)
        }
        return cls(
            id=str(body.get("id", "")),
            type=str(body.get("type", "")),
            state=str(body.get("state", "")),
            data=body.get("data"),
            attributes=body.get("attributes"),
            entities=body.get("entities"),
            inputs=inputs,
            secret_fields=body.get("secret_fields"),
            name=body.get("name"),
            index=int(body.get("index") or 0),
        )

    @property
    def state_ref(self) -> str:
        """``type/state``, as the catalog and the marker spell it."""
        return f"{self.type}/{self.state}"

    def secret_values(self) -> List[str]:
        """The text of this dataset's secret values and its inputs' (for scrubbing)."""
        values = secret_values(self.data, self.secret_fields)
        for dataset in self.inputs.values():
            values.extend(dataset.secret_values())
        return values

    def masked_data(self) -> Any:
        """``data`` with every secret field replaced by ``'***'``."""
        return _masked(self.data, self.secret_fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dataset) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        parts = [
            f"id={self.id!r}",
            f"state={self.state_ref!r}",
            f"attributes={self.attributes!r}",
            f"data={self.masked_data()!r}",
            f"entities={self.entities!r}",
        ]
        if self.inputs:
            parts.append(f"inputs={self.inputs!r}")
        return "Dataset(" + ", ".join(parts) + ")"

    __str__ = __repr__


def datasets_from(bodies: Iterable[Mapping[str, Any]]) -> Dict[str, List[Dataset]]:
    """Datasets grouped by name, ordered by index."""
    grouped: Dict[str, List[Dataset]] = {}
    for body in bodies:
        dataset = Dataset.from_json(body)
        grouped.setdefault(dataset.name or dataset.type, []).append(dataset)
    for items in grouped.values():
        items.sort(key=lambda d: d.index)
    return grouped

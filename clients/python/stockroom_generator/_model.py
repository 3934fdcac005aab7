"""What a generator's functions see and return: datasets, requests, answers.

The wire shapes are the generator protocol of docs/generators.md; these
classes only give them names. Secret values never appear in a repr.
"""

REDACTED = "[redacted]"


class Refuse(Exception):
    """Raise it to refuse a request this generator cannot serve.

    The pool gets a protocol refusal (HTTP 422, or exit code 65 for a command)
    with your message, and does not retry the same request.
    """


class DeclarationError(ValueError):
    """The generator's own declarations are inconsistent (found at start-up)."""


def _redacted(data, secret_fields):
    """A copy of `data` with the values at the secret paths replaced."""
    if not isinstance(data, dict) or not secret_fields:
        return data
    copy = _deep_copy(data)
    for path in secret_fields:
        parts = path.split(".")
        cur = copy
        for i, key in enumerate(parts):
            if not isinstance(cur, dict) or key not in cur:
                break
            if i == len(parts) - 1:
                cur[key] = REDACTED
            else:
                cur = cur[key]
    return copy


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


class Dataset:
    """One dataset as the pool sends it: `id`, `type`, `state`, `attributes`,
    `data`, `secret_fields`, `entities` and, for a composed one, `inputs`."""

    __slots__ = ("attributes", "data", "entities", "id", "inputs", "secret_fields", "state", "type")

    def __init__(self, id, type, state, attributes=None, data=None, secret_fields=(), entities=(), inputs=None):
        self.id = id
        self.type = type
        self.state = state
        self.attributes = dict(attributes or {})
        self.data = data if data is not None else {}
        self.secret_fields = list(secret_fields)
        self.entities = list(entities)
        self.inputs = dict(inputs or {})

    @classmethod
    def from_json(cls, value, where="dataset"):
        if not isinstance(value, dict):
            raise Refuse(f"{where} must be a JSON object")
        for key in ("type", "state"):
            if not isinstance(value.get(key), str):
                raise Refuse(f"{where} has no `{key}`")
        inputs = value.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise Refuse(f"{where}.inputs must be an object")
        return cls(
            id=str(value.get("id", "")),
            type=value["type"],
            state=value["state"],
            attributes=_attributes(value.get("attributes"), f"{where}.attributes"),
            data=value.get("data", {}),
            secret_fields=_strings(value.get("secret_fields"), f"{where}.secret_fields"),
            entities=_strings(value.get("entities"), f"{where}.entities"),
            inputs={name: cls.from_json(v, f"{where}.inputs.{name}") for name, v in inputs.items()},
        )

    def to_json(self):
        out = {
            "id": self.id,
            "type": self.type,
            "state": self.state,
            "attributes": dict(self.attributes),
            "data": self.data,
            "secret_fields": list(self.secret_fields),
            "entities": list(self.entities),
        }
        if self.inputs:
            out["inputs"] = {name: d.to_json() for name, d in self.inputs.items()}
        return out

    def __repr__(self):
        return (
            f"Dataset(id={self.id!r}, {self.type}/{self.state}, attributes={self.attributes!r}, "
            f"data={_redacted(self.data, self.secret_fields)!r}, entities={self.entities!r})"
        )


class Request:
    """One call from the pool.

    - `operation`: generate, extend, cleanup, reset or verify;
    - `request_id`: the same on every retry of the same step (use it to make
      a step idempotent);
    - generate: `type`, `state`, `attributes` (requested; echo them), `inputs`
      (name -> Dataset, one per declared `requires`);
    - extend: `extension` and `dataset`; lifecycle calls: `dataset`.
    """

    __slots__ = ("attributes", "dataset", "extension", "inputs", "operation", "request_id", "state", "type")

    def __init__(self, operation, request_id=None, type=None, state=None, attributes=None, inputs=None,
                 extension=None, dataset=None):
        self.operation = operation
        self.request_id = request_id
        self.type = type
        self.state = state
        self.attributes = dict(attributes or {})
        self.inputs = dict(inputs or {})
        self.extension = extension
        self.dataset = dataset

    def __repr__(self):
        what = f"{self.type}/{self.state}" if self.type else repr(self.extension or "")
        return f"Request({self.operation} {what}, request_id={self.request_id!r})"


class Answer:
    """What a generate, extend or reset function returns: build it with
    `gen.dataset(data=..., entities=[...])`.

    Left out, `attributes` echo the requested ones, `secret_fields` are the
    declared secret fields present in `data`, and `entities` (for extend and
    reset) stay those of the dataset.
    """

    __slots__ = ("attributes", "data", "entities", "secret_fields")

    def __init__(self, data, entities=None, attributes=None, secret_fields=None):
        self.data = data
        self.entities = None if entities is None else list(entities)
        self.attributes = None if attributes is None else dict(attributes)
        self.secret_fields = None if secret_fields is None else list(secret_fields)

    def __repr__(self):
        return f"Answer(data={_redacted(self.data, self.secret_fields or [])!r}, entities={self.entities!r})"


class Requirement:
    """A dataset another state is built from: `inputs[name]` of the request."""

    __slots__ = ("name", "state", "type")

    def __init__(self, name, type, state):
        for what, v in (("name", name), ("type", type), ("state", state)):
            if not isinstance(v, str) or not v:
                raise DeclarationError(f"a requirement's {what} must be a non-empty string")
        self.name, self.type, self.state = name, type, state

    @classmethod
    def of(cls, value):
        if isinstance(value, Requirement):
            return value
        if isinstance(value, dict):
            return cls(value.get("name"), value.get("type"), value.get("state"))
        if isinstance(value, (tuple, list)) and len(value) == 3:
            return cls(*value)
        raise DeclarationError(
            "requires takes (name, type, state) tuples, e.g. ('customer', 'customer', 'active')")

    def to_json(self):
        return {"name": self.name, "type": self.type, "state": self.state}


def _strings(value, where):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Refuse(f"{where} must be a list of strings")
    return value


def _attributes(value, where):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refuse(f"{where} must be an object")
    out = {}
    for name, v in value.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (int, float)):
            v = str(v)
        if not isinstance(v, str):
            raise Refuse(f"{where}.{name} must be a string, number or boolean")
        out[name] = v
    return out

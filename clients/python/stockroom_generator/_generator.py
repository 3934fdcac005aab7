"""The Generator: declared states, extensions and lifecycle calls, and the one
dispatch both transports (HTTP and command) use."""

import json
import logging
import os
import sys
import time
import traceback

from . import _check
from ._model import Answer, Dataset, DeclarationError, Refuse, Request, Requirement, _attributes

log = logging.getLogger("stockroom_generator")

#: The largest answer the pool accepts (its MAX_ANSWER_BYTES); larger ones are
#: refused here, before sending, with the size in the log.
MAX_ANSWER_BYTES = 16 * 1024 * 1024

OPERATIONS = ("capabilities", "generate", "extend", "cleanup", "reset", "verify")
LIFECYCLE = ("cleanup", "reset", "verify")


class Outcome:
    """What one call produced: `kind` is ok, refused (the request is wrong),
    failed (the generator is wrong) or unknown (no such operation)."""

    __slots__ = ("body", "kind", "message")

    def __init__(self, kind, body=None, message=None):
        self.kind, self.body, self.message = kind, body, message


class _State:
    __slots__ = (
        "attributes",
        "description",
        "fields",
        "lifecycle",
        "make",
        "requires",
        "reusable",
        "secret_fields",
        "state",
        "type",
    )

    @property
    def name(self):
        return f"{self.type}/{self.state}"

    def to_json(self):
        out = {"type": self.type, "state": self.state}
        if self.description:
            out["description"] = self.description
        out.update({
            "attributes": {k: list(v) for k, v in self.attributes.items()},
            "fields": list(self.fields),
            "secret_fields": list(self.secret_fields),
            "requires": [r.to_json() for r in self.requires],
            "reusable": self.reusable,
        })
        if self.lifecycle:
            out["lifecycle"] = [op for op in LIFECYCLE if op in self.lifecycle]
        return out


class _Extension:
    __slots__ = ("description", "fields", "frm", "name", "run", "to", "type")

    def to_json(self):
        out = {"name": self.name, "type": self.type, "from": self.frm, "to": self.to, "fields": list(self.fields)}
        if self.description:
            out["description"] = self.description
        return out


def _names(value, what):
    if isinstance(value, str):
        raise DeclarationError(f"{what} must be a list of field names, not one string")
    value = list(value or ())
    if not all(isinstance(v, str) and v for v in value):
        raise DeclarationError(f"{what} must be a list of non-empty strings")
    return value


def _declared_attributes(attributes, state_name):
    out = {}
    for name, values in (attributes or {}).items():
        if isinstance(values, str) or not all(isinstance(v, (str, int, bool)) for v in values):
            raise DeclarationError(
                f"{state_name}: attribute `{name}` takes a list of allowed values (empty allows any)")
        out[name] = list(_attributes({str(i): v for i, v in enumerate(values)}, name).values())
    return out


class Generator:
    """A generator: declare what it makes with the decorators, then call
    `main()` to serve it over HTTP (`serve --port N`) or run it as a command
    (`capabilities`, `generate`, ... with the request on stdin).

    `name` prefixes its log lines (default: the script's name).
    """

    def __init__(self, name=None, max_answer_bytes=MAX_ANSWER_BYTES):
        self.name = name or os.path.splitext(os.path.basename(sys.argv[0] or "generator"))[0] or "generator"
        self.max_answer_bytes = max_answer_bytes
        self._states = {}
        self._extensions = {}
        self._lifecycle = {}

    # -- declarations -----------------------------------------------------

    def produces(self, type, state, *, fields=(), secret_fields=(), attributes=None, description=None,
                 requires=(), reusable=False):
        """Declares that the decorated function makes datasets of `type/state`.

        The function gets a Request and returns `gen.dataset(...)`. `fields`
        are promised in every answer's data (dotted paths reach into nested
        objects); `requires` are (name, type, state) tuples, supplied as
        `req.inputs[name]`.
        """
        spec = _State()
        spec.type, spec.state = type, state
        for what, v in (("type", type), ("state", state)):
            if not isinstance(v, str) or not v or "/" in v:
                raise DeclarationError(f"produces: {what} must be a non-empty string without `/`")
        if spec.name in self._states:
            raise DeclarationError(f"{spec.name} is declared twice")
        spec.description = description
        spec.attributes = _declared_attributes(attributes, spec.name)
        spec.fields = _names(fields, f"{spec.name}: fields")
        spec.secret_fields = _names(secret_fields, f"{spec.name}: secret_fields")
        spec.requires = [Requirement.of(r) for r in requires or ()]
        if len({r.name for r in spec.requires}) != len(spec.requires):
            raise DeclarationError(f"{spec.name}: two requirements share a name")
        spec.reusable = bool(reusable)
        spec.lifecycle = {}

        def register(fn):
            spec.make = fn
            self._states[spec.name] = spec
            return fn

        return register

    def extension(self, name, type, *, frm, to, fields=(), description=None):
        """Declares an extension from `type/frm` to `type/to`. The decorated
        function gets (dataset, request) and returns `gen.dataset(...)` whose
        data replaces the old data (send everything back)."""
        if not isinstance(name, str) or not name:
            raise DeclarationError("an extension's name must be a non-empty string")
        if (type, name) in self._extensions:
            raise DeclarationError(f"extension {name!r} of {type} is declared twice")
        ext = _Extension()
        ext.name, ext.type, ext.frm, ext.to = name, type, frm, to
        ext.fields = _names(fields, f"extension {name}: fields")
        ext.description = description

        def register(fn):
            ext.run = fn
            self._extensions[(type, name)] = ext
            return fn

        return register

    def _lifecycle_decorator(self, operation, type, state):
        def register(fn):
            key = (operation, f"{type}/{state}")
            if key in self._lifecycle:
                raise DeclarationError(f"{operation} for {type}/{state} is declared twice")
            self._lifecycle[key] = fn
            return fn

        return register

    def cleanup(self, type, state):
        """The decorated function (dataset, request) removes a consumed or
        discarded dataset from the system under test; it returns nothing."""
        return self._lifecycle_decorator("cleanup", type, state)

    def reset(self, type, state):
        """The decorated function (dataset, request) brings a used dataset
        back to its state's start and returns `gen.dataset(...)`."""
        return self._lifecycle_decorator("reset", type, state)

    def verify(self, type, state):
        """The decorated function (dataset, request) says whether the dataset
        still holds: True, False, or (False, "reason")."""
        return self._lifecycle_decorator("verify", type, state)

    @staticmethod
    def dataset(data, *, entities=None, attributes=None, secret_fields=None):
        """The answer of a generate, extend or reset function."""
        return Answer(data, entities=entities, attributes=attributes, secret_fields=secret_fields)

    # -- capabilities -----------------------------------------------------

    def capabilities(self):
        """The capabilities JSON, derived from the declarations."""
        for (operation, state_name), fn in self._lifecycle.items():
            spec = self._states.get(state_name)
            if spec is None:
                raise DeclarationError(
                    f"{operation} is declared for {state_name}, which this generator does not produce; "
                    f"declare it with @gen.produces first")
            spec.lifecycle[operation] = fn
        return {
            "produces": [s.to_json() for s in self._states.values()],
            "extensions": [e.to_json() for e in self._extensions.values()],
        }

    # -- dispatch ---------------------------------------------------------

    def handle(self, operation, body):
        """Runs one call; `body` is the request's raw bytes (None for
        capabilities). Never raises: every failure becomes an Outcome."""
        started = time.monotonic()
        ctx = {"what": operation}
        try:
            if operation not in OPERATIONS:
                return Outcome("unknown", message=f"unknown operation {operation!r}; "
                                                  f"expected one of {', '.join(OPERATIONS)}")
            if operation == "capabilities":
                return self._encode(self.capabilities())
            try:
                request = json.loads(body or b"")
            except ValueError as e:
                raise Refuse(f"the request is not valid JSON ({e.msg}, line {e.lineno} column {e.colno})")
            if not isinstance(request, dict):
                raise Refuse("the request must be a JSON object")
            self.capabilities()
            handler = getattr(self, "_" + operation)
            outcome = self._encode(handler(request, ctx))
        except Refuse as e:
            outcome = Outcome("refused", message=f"{ctx['what']}: {e}")
        except (DeclarationError, _Broken) as e:
            outcome = Outcome("failed", message=f"{ctx['what']}: {e}")
        except Exception as e:  # noqa: BLE001 -- the domain team's function raised anything
            log.error("%s raised %s\n%s", ctx["what"], type(e).__name__, traceback.format_exc().rstrip())
            outcome = Outcome("failed", message=f"{ctx['what']} raised {type(e).__name__}: {e}")
        what = ctx["what"]
        if outcome.kind == "ok":
            log.debug("%s answered in %.0f ms", what, (time.monotonic() - started) * 1000)
        else:
            log.error("%s", outcome.message)
        return outcome

    def _encode(self, payload):
        try:
            body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise _Broken(f"the answer cannot be sent as JSON: {e}")
        if len(body) > self.max_answer_bytes:
            raise _Broken(f"the answer is {len(body)} bytes, more than the {self.max_answer_bytes} "
                          f"the pool accepts; make the dataset smaller (keep large files outside data)")
        return Outcome("ok", body=body)

    def _request_id(self, request):
        rid = request.get("request_id")
        if rid is not None and not isinstance(rid, str):
            raise Refuse("request_id must be a string")
        return rid

    def _generate(self, request, ctx):
        type_name, state = request.get("type"), request.get("state")
        name = f"{type_name}/{state}"
        spec = self._states.get(name)
        if spec is None:
            ctx["what"] = f"cannot generate {name}"
            raise Refuse(f"not declared; this generator produces {_list(self._states) or 'no states'}")
        ctx["what"] = f"generate {name}"
        attributes = _attributes(request.get("attributes"), "attributes")
        for attr, value in attributes.items():
            if attr not in spec.attributes:
                raise Refuse(f"attribute `{attr}` is not declared by {name}")
            if spec.attributes[attr] and value not in spec.attributes[attr]:
                raise Refuse(f"attribute `{attr}` must be one of {', '.join(spec.attributes[attr])}")
        raw_inputs = request.get("inputs") or {}
        if not isinstance(raw_inputs, dict):
            raise Refuse("inputs must be an object")
        inputs = {}
        for req in spec.requires:
            given = raw_inputs.get(req.name)
            if given is None:
                raise Refuse(f"input `{req.name}` ({req.type}/{req.state}) is missing from the request")
            ds = Dataset.from_json(given, f"inputs.{req.name}")
            if (ds.type, ds.state) != (req.type, req.state):
                raise Refuse(f"input `{req.name}` must be {req.type}/{req.state}, got {ds.type}/{ds.state}")
            inputs[req.name] = ds
        req = Request("generate", self._request_id(request), type_name, state, attributes, inputs)
        answer = _answer(spec.make(req))
        attrs = dict(attributes)
        if answer.attributes is not None:
            try:
                attrs.update(_attributes(answer.attributes, "the answer's attributes"))
            except Refuse as e:
                raise _Broken(str(e))
        secrets = _secrets(answer, spec.secret_fields, ())
        entities = answer.entities if answer.entities is not None else []
        problems = _check.check_data(answer.data, spec.fields, secrets, entities, set(spec.secret_fields))
        problems += _check.check_attributes(spec.attributes, attributes, attrs, name)
        _raise_if(problems)
        return {"attributes": attrs, "data": answer.data, "secret_fields": secrets, "entities": entities}

    def _extend(self, request, ctx):
        ext_name = request.get("extension")
        ctx["what"] = f"extend {ext_name!r}"
        dataset = Dataset.from_json(request.get("dataset"))
        ctx["what"] = f"extend {dataset.type}/{dataset.state} with {ext_name!r}"
        ext = self._extensions.get((dataset.type, ext_name))
        if ext is None:
            offered = [f"{n} ({t})" for (t, n) in self._extensions] or ["none"]
            raise Refuse(f"extension {ext_name!r} of {dataset.type} is not declared; offered: {', '.join(offered)}")
        if dataset.state != ext.frm:
            raise Refuse(f"the extension starts from {ext.type}/{ext.frm}")
        req = Request("extend", self._request_id(request), dataset.type, dataset.state,
                      dataset.attributes, extension=ext_name, dataset=dataset)
        answer = _answer(ext.run(dataset, req))
        promised, allowed = list(ext.fields), set(dataset.secret_fields)
        for state_name in (f"{ext.type}/{ext.frm}", f"{ext.type}/{ext.to}"):
            spec = self._states.get(state_name)
            if spec is not None:
                promised += [f for f in spec.fields if f not in promised]
                allowed |= set(spec.secret_fields)
        return self._data_answer(answer, dataset, promised, allowed)

    def _lifecycle_call(self, operation, request, ctx):
        dataset = Dataset.from_json(request.get("dataset"))
        name = f"{dataset.type}/{dataset.state}"
        ctx["what"] = f"{operation} {name}"
        spec = self._states.get(name)
        fn = spec.lifecycle.get(operation) if spec else None
        if fn is None:
            declared = [f"{s}" for (op, s) in self._lifecycle if op == operation]
            raise Refuse(f"{operation} is not declared for {name}; declared for: {', '.join(declared) or 'no state'}")
        req = Request(operation, self._request_id(request), dataset.type, dataset.state,
                      dataset.attributes, dataset=dataset)
        return spec, dataset, fn(dataset, req)

    def _cleanup(self, request, ctx):
        _, _, result = self._lifecycle_call("cleanup", request, ctx)
        if result is not None:
            raise _Broken("the cleanup function must return nothing (raise to report a failure)")
        return {}

    def _reset(self, request, ctx):
        spec, dataset, result = self._lifecycle_call("reset", request, ctx)
        return self._data_answer(_answer(result), dataset, spec.fields, set(spec.secret_fields))

    def _verify(self, request, ctx):
        _, _, result = self._lifecycle_call("verify", request, ctx)
        reason = None
        if isinstance(result, tuple) and len(result) == 2:
            result, reason = result
        if not isinstance(result, bool) or (reason is not None and not isinstance(reason, str)):
            raise _Broken("the verify function must return True, False or (False, 'reason')")
        if not result and not reason:
            reason = "the generator found it no longer holds"
        return {"valid": result, "reason": reason}

    def _data_answer(self, answer, dataset, promised, allowed_secrets):
        secrets = _secrets(answer, allowed_secrets, dataset.secret_fields)
        entities = answer.entities if answer.entities is not None else list(dataset.entities)
        _raise_if(_check.check_data(answer.data, promised, secrets, entities, allowed_secrets))
        return {"data": answer.data, "secret_fields": secrets, "entities": entities}

    # -- running ----------------------------------------------------------

    def main(self, argv=None):
        """`serve [--host H] [--port N]` or one of capabilities, generate,
        extend, cleanup, reset, verify (the request on stdin). Exits."""
        from ._transport import main

        sys.exit(main(self, sys.argv[1:] if argv is None else argv))


class _Broken(Exception):
    """The generator's own answer breaks its declarations."""


def _list(names):
    return ", ".join(sorted(names))


def _answer(result):
    if isinstance(result, Answer):
        return result
    if isinstance(result, dict) and "data" in result:
        return Answer(result["data"], result.get("entities"), result.get("attributes"), result.get("secret_fields"))
    raise _Broken(f"the function must return gen.dataset(data=..., entities=[...]), "
                  f"got {_check.json_kind(result) if not callable(result) else 'a function'}")


def _secrets(answer, declared, inherited):
    """The answer's secret fields: those it names, plus every declared or
    inherited one that is present in data (so none is ever printed)."""
    named = list(answer.secret_fields or [])
    for field in list(declared) + list(inherited):
        if field not in named and _check.has_path(answer.data, field):
            named.append(field)
    return named


def _raise_if(problems):
    if problems:
        raise _Broken(f"the answer breaks the declaration: {'; '.join(problems)}")

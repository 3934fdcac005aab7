"""The checks the pool makes on every answer (docs/generators.md, "What is
checked"), made here first so that a broken promise shows in the generator's
own log, with the state's name, instead of as a failed dataset in the pool.

Problems name fields and attributes, never their values: data may hold secrets.
"""

_MISSING = object()


def lookup_path(data, path):
    """`a.b.c` in nested objects, or _MISSING."""
    cur = data
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return _MISSING
        cur = cur[key]
    return cur


def has_path(data, path):
    return lookup_path(data, path) is not _MISSING


def json_kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def check_data(data, promised, secret_fields, entities, allowed_secrets=None):
    """Problems with `data`, its secret fields and the entities."""
    problems = []
    if not isinstance(data, dict):
        return [f"data must be a JSON object, found {json_kind(data)}"]
    for field in promised:
        value = lookup_path(data, field)
        if value is _MISSING:
            problems.append(f"promised field `{field}` is missing from data")
        elif value is None:
            problems.append(f"promised field `{field}` is null")
    for secret in secret_fields:
        if not has_path(data, secret):
            problems.append(f"secret field `{secret}` is not in data")
        elif allowed_secrets is not None and secret not in allowed_secrets:
            problems.append(f"secret field `{secret}` is not declared in secret_fields")
    seen = set()
    for i, entity in enumerate(entities, start=1):
        kind, sep, ident = entity.partition(":") if isinstance(entity, str) else ("", "", "")
        if not (kind and sep and ident):
            problems.append(f"entity {i} must look like `kind:id`, e.g. `customer:C1042`")
        if entity in seen:
            problems.append("an entity is listed twice")
        seen.add(entity if isinstance(entity, str) else repr(entity))
    return problems


def check_attributes(declared, requested, answered, state_name):
    """Problems with a generate answer's attributes."""
    problems = []
    for name, value in answered.items():
        if name not in declared:
            problems.append(f"attribute `{name}` is not declared by {state_name}")
        elif declared[name] and value not in declared[name]:
            problems.append(
                f"attribute `{name}` has a value outside the declared ones ({', '.join(declared[name])})")
    for name, wanted in requested.items():
        if name not in answered:
            problems.append(f"requested attribute `{name}` is not echoed in the answer's attributes")
        elif answered[name] != wanted:
            problems.append(f"attribute `{name}` differs from the requested `{name} = {wanted}`")
    return problems

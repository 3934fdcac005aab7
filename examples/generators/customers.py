#!/usr/bin/env python3
"""A Stockroom generator for customers, using only Python's standard library.

As a command (one process per call, request JSON on stdin, answer on stdout):

    python3 customers.py capabilities
    echo '{"type": "customer", "state": "new", "attributes": {"country": "DE"}}' \
        | python3 customers.py generate
    python3 customers.py extend < extend-request.json

As an HTTP service (GET /capabilities, POST /generate, POST /extend):

    python3 customers.py serve --port 9001

Pool config, either way:

    [[generators]]
    name = "customers"
    command = ["python3", "examples/generators/customers.py"]
    # or: url = "http://127.0.0.1:9001"
"""

import json
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNTRIES = ["DE", "US", "FR"]
CUSTOMER_FIELDS = ["customer_id", "email", "password", "country"]

CAPABILITIES = {
    "produces": [
        {
            "type": "customer",
            "state": "new",
            "description": "registered customer, email not verified yet",
            "attributes": {"country": COUNTRIES},
            "fields": CUSTOMER_FIELDS,
            "secret_fields": ["password"],
        },
        {
            "type": "customer",
            "state": "active",
            "description": "verified customer",
            "attributes": {"country": COUNTRIES},
            "fields": CUSTOMER_FIELDS + ["email_verified_at"],
            "secret_fields": ["password"],
        },
    ],
    "extensions": [
        {
            "name": "verify-email",
            "type": "customer",
            "from": "new",
            "to": "active",
            "fields": ["email_verified_at"],
        }
    ],
}


class Refused(Exception):
    """A request this generator cannot serve: exit 1 / HTTP 422."""


def generate(request):
    if request.get("type") != "customer" or request.get("state") not in ("new", "active"):
        raise Refused(f"cannot generate {request.get('type')}/{request.get('state')}")
    country = request.get("attributes", {}).get("country") or secrets.choice(COUNTRIES)
    if country not in COUNTRIES:
        raise Refused(f"country must be one of {', '.join(COUNTRIES)}")
    # A real generator would call the customer service's API here, the way
    # the product creates customers; this one makes the record up.
    customer_id = f"C{secrets.randbelow(90000) + 10000}"
    data = {
        "customer_id": customer_id,
        "email": f"{customer_id.lower()}@x.test",
        "password": secrets.token_urlsafe(12),
        "country": country,
    }
    if request["state"] == "active":
        data["email_verified_at"] = "2025-01-01T00:00:00Z"
    return {
        "attributes": {"country": country},  # echo what was asked for
        "data": data,
        "secret_fields": ["password"],
        "entities": [f"customer:{customer_id}"],
    }


def extend(request):
    dataset = request.get("dataset", {})
    if request.get("extension") != "verify-email" or dataset.get("state") != "new":
        raise Refused(f"no extension {request.get('extension')!r} from customer/{dataset.get('state')}")
    data = dict(dataset["data"])
    data["email_verified_at"] = "2025-01-01T00:00:00Z"
    # `data` replaces the old data, so everything is sent back.
    return {
        "data": data,
        "secret_fields": dataset.get("secret_fields", []),
        "entities": dataset.get("entities", []),
    }


def answer(operation, body):
    if operation == "capabilities":
        return CAPABILITIES
    if operation == "generate":
        return generate(body)
    if operation == "extend":
        return extend(body)
    raise Refused(f"unknown operation {operation!r}")


class Handler(BaseHTTPRequestHandler):
    def _reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/capabilities":
            self._reply(200, CAPABILITIES)
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self):
        operation = self.path.strip("/")
        try:
            length = int(self.headers.get("Content-Length", "0"))
            self._reply(200, answer(operation, json.loads(self.rfile.read(length))))
        except Refused as e:
            self._reply(422, {"error": str(e)})

    def log_message(self, format, *args):  # keep stdout clean; log to stderr
        sys.stderr.write("customers: " + format % args + "\n")


def main(argv):
    if len(argv) >= 2 and argv[1] == "serve":
        port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()
        return 0
    if len(argv) != 2:
        sys.stderr.write("usage: customers.py capabilities|generate|extend  or  customers.py serve [--port N]\n")
        return 64
    operation = argv[1]
    try:
        body = json.load(sys.stdin) if operation != "capabilities" else None
        json.dump(answer(operation, body), sys.stdout)
    except Refused as e:
        sys.stderr.write(f"customers: {e}\n")  # kept by the pool with the failure
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

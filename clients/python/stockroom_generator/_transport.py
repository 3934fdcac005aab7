"""The two ways the pool calls a generator (docs/generators.md): an HTTP
service, or one process per call with the request on stdin and the answer on
stdout. Both go through Generator.handle."""

import io
import json
import logging
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ._generator import OPERATIONS, DeclarationError, log

#: The largest request accepted over HTTP (a composed request carries its inputs).
MAX_REQUEST_BYTES = 64 * 1024 * 1024

#: Exit codes in command mode (sysexits.h): the pool treats any non-zero code
#: as a failed call and keeps stderr with it.
EXIT_OK = 0
EXIT_USAGE = 64      # unknown operation or flag
EXIT_REFUSED = 65    # the request is wrong: undeclared state, missing input, bad JSON
EXIT_FAILED = 70     # the generator is wrong: it raised, or its answer breaks its declaration
EXIT_CONFIG = 78     # the declarations are inconsistent

_EXIT = {"ok": EXIT_OK, "refused": EXIT_REFUSED, "failed": EXIT_FAILED, "unknown": EXIT_USAGE}
_STATUS = {"ok": 200, "refused": 422, "failed": 500, "unknown": 404}
_TITLE = {"refused": "request refused", "failed": "generator failed", "unknown": "not found"}

USAGE = """usage: {name} serve [--host HOST] [--port PORT]      HTTP service (default 127.0.0.1, a free port)
       {name} capabilities|generate|extend|cleanup|reset|verify
                                   one call: the request on stdin, the answer on stdout
"""


def _setup_logging(name):
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{name}: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if os.environ.get("STOCKROOM_LOG", "").lower() == "debug" else logging.INFO)
    log.propagate = False


def main(gen, argv):
    _setup_logging(gen.name)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stderr.write(USAGE.format(name=gen.name))
        return EXIT_OK if argv else EXIT_USAGE
    try:
        gen.capabilities()
    except DeclarationError as e:
        log.error("%s", e)
        return EXIT_CONFIG
    operation, rest = argv[0], argv[1:]
    if operation == "serve":
        try:
            host, port = _serve_flags(rest)
        except ValueError as e:
            sys.stderr.write(f"{gen.name}: {e}\n" + USAGE.format(name=gen.name))
            return EXIT_USAGE
        return serve(gen, host, port)
    if operation not in OPERATIONS or rest:
        sys.stderr.write(f"{gen.name}: unknown operation {' '.join(argv)!r}\n" + USAGE.format(name=gen.name))
        return EXIT_USAGE
    return run_command(gen, operation)


def _serve_flags(args):
    host, port = "127.0.0.1", 0
    it = iter(args)
    for flag in it:
        value = next(it, None)
        if value is None:
            raise ValueError(f"{flag} needs a value")
        if flag == "--port":
            if not value.isdigit() or int(value) > 65535:
                raise ValueError(f"--port takes a number from 0 to 65535, not {value!r}")
            port = int(value)
        elif flag == "--host":
            host = value
        else:
            raise ValueError(f"unknown flag {flag!r}")
    return host, port


def run_command(gen, operation):
    """One call: the request on stdin, the answer alone on stdout.

    While the domain team's function runs, file descriptor 1 points at
    stderr, so a stray print() (or a child process's output) lands in the
    log instead of corrupting the answer.
    """
    body = None if operation == "capabilities" else sys.stdin.buffer.read()
    sys.stdout.flush()
    try:
        answer_fd = os.dup(1)
        os.dup2(2, 1)
    except (OSError, io.UnsupportedOperation):
        answer_fd = None
    try:
        outcome = gen.handle(operation, body)
    finally:
        sys.stdout.flush()
        if answer_fd is not None:
            os.dup2(answer_fd, 1)
            os.close(answer_fd)
    if outcome.kind == "ok":
        sys.stdout.buffer.write(outcome.body + b"\n")
        sys.stdout.flush()
    return _EXIT[outcome.kind]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stockroom-generator"
    gen = None  # set per server

    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/capabilities":
            self._answer(self.gen.handle("capabilities", None))
        elif path == "/healthz":
            self._send(200, "application/json", b'{"status":"ok"}')
        else:
            self._problem(404, "not found", f"no {path}; GET /capabilities or POST /generate, /extend, "
                                            f"/cleanup, /reset, /verify")

    def do_POST(self):
        operation = self.path.split("?", 1)[0].strip("/")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._problem(411, "length required", "send the request with a Content-Length")
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            return self._problem(413, "request too large", f"the request is larger than {MAX_REQUEST_BYTES} bytes")
        body = self.rfile.read(length)
        if operation == "capabilities" or operation not in OPERATIONS:
            return self._problem(404, "not found", f"no POST /{operation}")
        self._answer(self.gen.handle(operation, body))

    def _answer(self, outcome):
        if outcome.kind == "ok":
            self._send(200, "application/json", outcome.body)
        else:
            self._problem(_STATUS[outcome.kind], _TITLE[outcome.kind], outcome.message)

    def _problem(self, status, title, detail):
        body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
        self._send(status, "application/problem+json", body)

    def _send(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # stdout stays clean; access lines at debug
        log.debug("%s", format % args)


def make_server(gen, host="127.0.0.1", port=0):
    """A threaded HTTP server for `gen`, bound but not yet serving."""
    handler = type("Handler", (_Handler,), {"gen": gen})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(gen, host, port):
    try:
        server = make_server(gen, host, port)
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", host, port, e.strerror or e)
        return 74
    bound_host, bound_port = server.server_address[:2]
    stop = lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The one line on stdout, for scripts that start it with --port 0.
    print(f"listening on http://{bound_host}:{bound_port}", flush=True)
    log.info("serving %d states and %d extensions on http://%s:%s", len(gen._states), len(gen._extensions),
             bound_host, bound_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return EXIT_OK

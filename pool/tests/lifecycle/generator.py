"""A loopback HTTP generator with lifecycle calls, for pool/tests/lifecycle.rs.

argv[1] is a work directory: the generator writes its port to DIR/port, logs
every call's request id to DIR/requests.log, and reads DIR/mode.json on each
call ({"reset": "malformed"} etc.) to misbehave on purpose: "500",
"malformed", "huge", "slow", "invalid" (verify only). DIR/caps.json, when
present, replaces the capabilities (a generator upgraded under the pool); a
generated dataset holds every field its state promises then.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORK = sys.argv[1]
ACCOUNT = {"fields": ["user", "password"], "secret_fields": ["password"]}
CAPS = {"produces": [
    dict(ACCOUNT, type="account", state="shared", reusable=True,
         lifecycle=["cleanup", "reset", "verify"]),
    dict(ACCOUNT, type="account", state="single", lifecycle=["cleanup", "verify"]),
]}
LOCK = threading.Lock()
COUNTER = [0]


def caps():
    try:
        with open(os.path.join(WORK, "caps.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return CAPS


def mode(call):
    try:
        with open(os.path.join(WORK, "mode.json")) as f:
            return json.load(f).get(call, "ok")
    except (OSError, ValueError):
        return "ok"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the pool gave up on a huge answer: what the test wants

    def do_GET(self):
        self.answer(200, caps())

    def do_POST(self):
        call = self.path.strip("/")
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with LOCK, open(os.path.join(WORK, "requests.log"), "a") as log:
            log.write(json.dumps({"call": call, "request_id": body.get("request_id"),
                                  "id": body.get("dataset", {}).get("id")}) + "\n")
        how = mode(call)
        if how == "500":
            return self.answer(500, {"error": "down for maintenance"})
        if how == "malformed":
            return self.answer(200, b"{not json")
        if how == "huge":
            return self.answer(200, b'{"valid": true, "reason": "' + b"x" * (17 * 1024 * 1024) + b'"}')
        if how == "slow":
            time.sleep(5)
        if call == "generate":
            with LOCK:
                COUNTER[0] += 1
                k = COUNTER[0]
            fields = next((p["fields"] for p in caps()["produces"] if p["state"] == body["state"]), [])
            data = dict({f: f"{f}-{k}" for f in fields}, user=f"u{k}", password="pw")
            return self.answer(200, {"data": data,
                                     "secret_fields": ["password"], "entities": [f"account:u{k}"]})
        dataset = body["dataset"]
        if call == "reset":
            data = dict(dataset["data"], password="pw", resets=dataset["data"].get("resets", 0) + 1)
            return self.answer(200, {"data": data, "secret_fields": dataset["secret_fields"],
                                     "entities": dataset["entities"]})
        if call == "verify":
            if how == "invalid":
                return self.answer(200, {"valid": False, "reason": "the user was deleted"})
            return self.answer(200, {"valid": True})
        if call == "cleanup":
            return self.answer(200, {})
        return self.answer(404, {"error": "unknown call"})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
tmp = os.path.join(WORK, "port.tmp")
with open(tmp, "w") as f:
    f.write(str(server.server_address[1]))
os.rename(tmp, os.path.join(WORK, "port"))
server.serve_forever()

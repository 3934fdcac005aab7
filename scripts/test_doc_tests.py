#!/usr/bin/env python3
"""Tests of scripts/doc-tests.py's guards around the demo pool's fixed ports:
a busy port is named with what holds it, a second run waits for the first
one's lock, and a pool that answers /readyz without being this run's own is
not taken for it. Run by .ci/doc-tests.sh before the blocks themselves."""

import http.server
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("doc_tests", HERE / "doc-tests.py")
doc_tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(doc_tests)


def listening_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the handler's API)
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


class PortGuards(unittest.TestCase):
    def test_a_listening_port_is_in_use_and_a_closed_one_is_free(self):
        sock, port = listening_socket()
        with sock:
            self.assertTrue(doc_tests.port_in_use(port))
        self.assertFalse(doc_tests.port_in_use(port))

    def test_the_message_names_the_port_and_the_process_that_holds_it(self):
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import socket,sys,time\n"
             "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\n"
             "print(s.getsockname()[1], flush=True); sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            port = int(holder.stdout.readline())
            free_sock, free_port = listening_socket()
            free_sock.close()
            message = doc_tests.busy_ports_message((port, free_port))
            self.assertIn(f"127.0.0.1:{port} is in use by python", message)
            self.assertIn(f"pid {holder.pid}", message)
            self.assertNotIn(f"127.0.0.1:{free_port} is in use", message)
            self.assertIn("stop what listens there", message)
        finally:
            holder.stdin.close()
            holder.wait(timeout=10)
            holder.stdout.close()
        self.assertIsNone(doc_tests.busy_ports_message((port,)))

    def test_a_second_run_waits_for_the_lock_and_gives_up_at_its_deadline(self):
        with tempfile.TemporaryDirectory() as tmp:
            lock = Path(tmp) / "demo.lock"
            holder = subprocess.Popen(
                [sys.executable, "-c",
                 "import fcntl,sys\n"
                 f"f=open({str(lock)!r},'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
                 "print('held', flush=True); sys.stdin.read()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            try:
                self.assertEqual(holder.stdout.readline().strip(), "held")
                t0 = time.time()
                self.assertIsNone(doc_tests.hold_lock(lock, 1))
                self.assertGreaterEqual(time.time() - t0, 1)
            finally:
                holder.stdin.close()
                holder.wait(timeout=10)
                holder.stdout.close()
            handle = doc_tests.hold_lock(lock, 5)
            self.assertIsNotNone(handle)
            self.assertEqual(lock.read_text().strip(), str(os.getpid()))
            handle.close()

    def test_a_pool_that_is_not_this_runs_own_is_not_ready(self):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "pool.log"
            log.write_text("")
            proc = subprocess.Popen(["sleep", "30"])
            try:
                # Someone else's pool answers /readyz; ours never announced itself.
                problem = doc_tests.wait_ready(url, time.time() + 1, proc, log)
                self.assertIn("not ready", problem)
                log.write_text(f"Stockroom demo pool: {url}  (catalog: ...)\n")
                self.assertIsNone(doc_tests.wait_ready(url, time.time() + 5, proc, log))
            finally:
                proc.kill()
                proc.wait()
            # A pool process that died (its bind failed) is named as such.
            dead = subprocess.Popen(["false"])
            dead.wait()
            self.assertIn("exited 1", doc_tests.wait_ready(url, time.time() + 5, dead, log))
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    unittest.main(verbosity=2)

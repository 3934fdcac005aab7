"""The Python generator SDK, run for real: sample_gen.py as a command (one
subprocess per call) and as an HTTP service (a subprocess serving on a free
loopback port), checked against the protocol of docs/generators.md.

Run: python3 -m unittest discover -s clients/python/tests_generator
"""

import json
import os
import signal
import subprocess
import sys
import threading
import unittest
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent
SAMPLE = HERE / "sample_gen.py"
PATIENCE = 30  # seconds; every wait below is bounded by it


def env(**extra):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), e.get("PYTHONPATH", "")])
    e.update(extra)
    return e


def run(operation, request=None, script=SAMPLE, **extra_env):
    """One command-mode call: (exit code, parsed stdout or None, stderr)."""
    done = subprocess.run(
        [sys.executable, str(script), *([operation] if isinstance(operation, str) else operation)],
        input=b"" if request is None else json.dumps(request).encode(),
        capture_output=True, timeout=PATIENCE, env=env(**extra_env), check=False,
    )
    out = done.stdout.decode()
    answer = json.loads(out) if done.returncode == 0 and out.strip() else None
    return done.returncode, answer, out, done.stderr.decode()


def dataset(type_name, state, data, **more):
    return {"id": "ds_1", "type": type_name, "state": state, "attributes": more.pop("attributes", {}),
            "data": data, "secret_fields": more.pop("secret_fields", []), "entities": more.pop("entities", []),
            **more}


CUSTOMER = dataset("customer", "active", {"customer_id": "C1", "email": "c1@x.test", "password": "hunter2",
                                          "card": {"last4": "4242"}},
                   secret_fields=["password"], entities=["customer:C1"])


class CommandMode(unittest.TestCase):
    def test_capabilities_are_derived_from_the_declarations(self):
        code, caps, _, err = run("capabilities")
        self.assertEqual(code, 0, err)
        states = {f"{p['type']}/{p['state']}": p for p in caps["produces"]}
        active = states["customer/active"]
        self.assertEqual(active["fields"], ["customer_id", "email", "card.last4"])
        self.assertEqual(active["secret_fields"], ["password"])
        self.assertEqual(active["attributes"], {"country": ["DE", "US"], "tier": []})
        self.assertEqual(active["description"], "verified customer")
        self.assertTrue(active["reusable"])
        self.assertEqual(active["lifecycle"], ["cleanup", "reset", "verify"])
        self.assertEqual(states["order/placed"]["requires"],
                         [{"name": "buyer", "type": "customer", "state": "active-with-payment"}])
        self.assertNotIn("lifecycle", states["order/placed"])
        self.assertEqual(caps["extensions"], [{"name": "add-card", "type": "customer", "from": "active",
                                               "to": "active-with-payment", "fields": ["payment_method_id"]}])

    def test_generate_answers_on_a_clean_stdout_and_fills_in_the_defaults(self):
        code, answer, out, err = run("generate", {"type": "customer", "state": "active",
                                                  "attributes": {"country": "DE", "tier": "gold"},
                                                  "request_id": "req-1234"})
        self.assertEqual(code, 0, err)
        # stdout holds the answer alone: the print() and the child's echo went to stderr.
        self.assertEqual(out.count("\n"), 1, out)
        self.assertIn("a stray print that must not reach the answer", err)
        self.assertIn("a child process writing to stdout", err)
        self.assertEqual(answer["data"]["customer_id"], "C1234", "request_id reaches the function")
        # Requested attributes are echoed; the declared secret present in data is marked.
        self.assertEqual(answer["attributes"], {"country": "DE", "tier": "gold"})
        self.assertEqual(answer["secret_fields"], ["password"])
        self.assertEqual(answer["entities"], ["customer:C1234"])

    def test_a_missing_promised_field_is_an_error_naming_the_state_and_nothing_is_sent(self):
        code, _, out, err = run("generate", {"type": "x", "state": "missing-field"})
        self.assertEqual(code, 70)
        self.assertEqual(out, "")
        self.assertIn("sample: generate x/missing-field: the answer breaks the declaration: "
                      "promised field `b.c` is missing from data", err)
        self.assertNotIn("`a`", err)

    def test_an_exception_is_a_protocol_error_with_the_traceback_on_stderr(self):
        code, _, out, err = run("generate", {"type": "x", "state": "raises"})
        self.assertEqual(code, 70)
        self.assertEqual(out, "")
        self.assertIn("Traceback (most recent call last)", err)
        self.assertIn('raise KeyError("no-such-key")', err)
        # The last line (what the pool shows with the failure) names the state and the cause.
        self.assertEqual(err.strip().splitlines()[-1],
                         "sample: generate x/raises raised KeyError: 'no-such-key'")

    def test_an_undeclared_state_is_refused_by_name(self):
        code, _, out, err = run("generate", {"type": "customer", "state": "gone"})
        self.assertEqual(code, 65)
        self.assertEqual(out, "")
        self.assertIn("cannot generate customer/gone: not declared; this generator produces "
                      "customer/active, order/placed", err)

    def test_undeclared_or_disallowed_attributes_are_refused(self):
        code, _, _, err = run("generate", {"type": "customer", "state": "active", "attributes": {"country": "FR"}})
        self.assertEqual(code, 65)
        self.assertIn("attribute `country` must be one of DE, US", err)
        code, _, _, err = run("generate", {"type": "customer", "state": "active", "attributes": {"colour": "red"}})
        self.assertEqual(code, 65)
        self.assertIn("attribute `colour` is not declared by customer/active", err)

    def test_a_huge_answer_is_refused_before_sending(self):
        code, _, out, err = run("generate", {"type": "x", "state": "huge"}, SAMPLE_MAX_ANSWER="1000000")
        self.assertEqual(code, 70)
        self.assertEqual(out, "")
        self.assertRegex(err, r"generate x/huge: the answer is 20000\d\d bytes, more than the 1000000 the pool accepts")
        # Under the default limit (the pool's 16 MiB) the same answer goes through.
        code, answer, _, err = run("generate", {"type": "x", "state": "huge"})
        self.assertEqual(code, 0, err)
        self.assertEqual(len(answer["data"]["blob"]), 2_000_000)

    def test_undeclared_secrets_bad_entities_and_wrong_returns_are_caught(self):
        code, _, _, err = run("generate", {"type": "x", "state": "undeclared-secret"})
        self.assertEqual(code, 70)
        self.assertIn("secret field `token` is not declared in secret_fields", err)
        code, _, _, err = run("generate", {"type": "x", "state": "bad-entities"})
        self.assertEqual(code, 70)
        self.assertIn("entity 1 must look like `kind:id`", err)
        self.assertIn("an entity is listed twice", err)
        code, _, _, err = run("generate", {"type": "x", "state": "wrong-return"})
        self.assertEqual(code, 70)
        self.assertIn("generate x/wrong-return: the function must return gen.dataset(", err)

    def test_requires_supplies_typed_inputs_and_refuses_missing_or_wrong_ones(self):
        buyer = dataset("customer", "active-with-payment", {"customer_id": "C7"}, entities=["customer:C7"])
        code, answer, _, err = run("generate", {"type": "order", "state": "placed", "inputs": {"buyer": buyer}})
        self.assertEqual(code, 0, err)
        self.assertEqual(answer["data"]["customer_id"], "C7")
        self.assertEqual(answer["data"]["buyer_type"], "Dataset")
        code, _, _, err = run("generate", {"type": "order", "state": "placed"})
        self.assertEqual(code, 65)
        self.assertIn("generate order/placed: input `buyer` (customer/active-with-payment) is missing", err)
        wrong = dataset("customer", "active", {"customer_id": "C7"})
        code, _, _, err = run("generate", {"type": "order", "state": "placed", "inputs": {"buyer": wrong}})
        self.assertEqual(code, 65)
        self.assertIn("input `buyer` must be customer/active-with-payment, got customer/active", err)

    def test_extend_sends_everything_back_and_keeps_entities_and_secrets(self):
        code, answer, _, err = run("extend", {"extension": "add-card", "dataset": CUSTOMER, "request_id": "r"})
        self.assertEqual(code, 0, err)
        self.assertEqual(answer["data"]["payment_method_id"], "pm_1")
        self.assertEqual(answer["data"]["email"], "c1@x.test")
        self.assertEqual(answer["entities"], ["customer:C1"])
        self.assertEqual(answer["secret_fields"], ["password"])

    def test_extend_refusals_and_broken_answers(self):
        code, _, _, err = run("extend", {"extension": "fly", "dataset": CUSTOMER})
        self.assertEqual(code, 65)
        self.assertIn("extension 'fly' of customer is not declared; offered: add-card (customer)", err)
        code, _, _, err = run("extend", {"extension": "add-card", "dataset": {**CUSTOMER, "state": "new"}})
        self.assertEqual(code, 65)
        self.assertIn("the extension starts from customer/active", err)
        refused = {**CUSTOMER, "data": {**CUSTOMER["data"], "customer_id": "REFUSE"}}
        code, _, _, err = run("extend", {"extension": "add-card", "dataset": refused})
        self.assertEqual(code, 65)
        self.assertIn("this customer cannot hold a card", err)
        dropped = {**CUSTOMER, "data": {**CUSTOMER["data"], "customer_id": "DROP"}}
        code, _, _, err = run("extend", {"extension": "add-card", "dataset": dropped})
        self.assertEqual(code, 70)
        # data replaces the old data: the from-state's promised field must still be there.
        self.assertIn("promised field `email` is missing from data", err)

    def test_lifecycle_calls(self):
        code, answer, _, err = run("cleanup", {"request_id": "r-9", "dataset": CUSTOMER})
        self.assertEqual((code, answer), (0, {}), err)
        self.assertIn("cleaned ['customer:C1'] for r-9", err)
        code, answer, _, err = run("reset", {"request_id": "r", "dataset": CUSTOMER})
        self.assertEqual(code, 0, err)
        self.assertEqual(answer["data"]["card"], {"last4": "0000"})
        self.assertEqual(answer["entities"], ["customer:C1"])
        self.assertEqual(answer["secret_fields"], ["password"])
        code, answer, _, err = run("verify", {"request_id": "r", "dataset": CUSTOMER})
        self.assertEqual((code, answer), (0, {"valid": True, "reason": None}), err)
        gone = {**CUSTOMER, "data": {**CUSTOMER["data"], "customer_id": "GONE"}}
        code, answer, _, err = run("verify", {"request_id": "r", "dataset": gone})
        self.assertEqual((code, answer), (0, {"valid": False, "reason": "the customer was deleted"}), err)
        code, _, _, err = run("cleanup", {"request_id": "r", "dataset": dataset("x", "raises", {})})
        self.assertEqual(code, 65)
        self.assertIn("cleanup x/raises: cleanup is not declared for x/raises; declared for: customer/active", err)

    def test_bad_requests_and_usage(self):
        done = subprocess.run([sys.executable, str(SAMPLE), "generate"], input=b"{not json",
                              capture_output=True, timeout=PATIENCE, env=env(), check=False)
        self.assertEqual(done.returncode, 65)
        self.assertIn(b"the request is not valid JSON", done.stderr)
        code, _, _, err = run("destroy", {})
        self.assertEqual(code, 64)
        self.assertIn("unknown operation 'destroy'", err)
        code, _, _, err = run(["serve", "--port", "http"])
        self.assertEqual(code, 64)
        self.assertIn("--port takes a number", err)

    def test_inconsistent_declarations_stop_the_generator_at_start(self):
        script = HERE / "_bad_decl_gen.py"
        script.write_text(
            "from stockroom_generator import Generator\n"
            "gen = Generator(name='bad')\n"
            "@gen.cleanup('customer', 'active')\n"
            "def c(dataset, req):\n"
            "    pass\n"
            "gen.main()\n")
        try:
            code, _, _, err = run("capabilities", script=script)
        finally:
            script.unlink()
        self.assertEqual(code, 78)
        self.assertIn("cleanup is declared for customer/active, which this generator does not produce", err)


class InProcess(unittest.TestCase):
    def test_reprs_never_show_secret_values(self):
        sys.path.insert(0, str(PACKAGE_ROOT))
        from stockroom_generator import Dataset

        ds = Dataset.from_json(CUSTOMER)
        self.assertNotIn("hunter2", repr(ds))
        self.assertIn("[redacted]", repr(ds))
        self.assertEqual(ds.data["password"], "hunter2")

    def test_declaration_mistakes_are_reported_where_they_are_made(self):
        sys.path.insert(0, str(PACKAGE_ROOT))
        from stockroom_generator import DeclarationError, Generator

        gen = Generator(name="t")
        with self.assertRaisesRegex(DeclarationError, "list of field names, not one string"):
            gen.produces("a", "b", fields="customer_id")
        with self.assertRaisesRegex(DeclarationError, r"takes \(name, type, state\) tuples"):
            gen.produces("a", "b", requires=["customer"])
        gen.produces("a", "b")(lambda req: None)
        with self.assertRaisesRegex(DeclarationError, "a/b is declared twice"):
            gen.produces("a", "b")(lambda req: None)


class HttpMode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc = subprocess.Popen([sys.executable, str(SAMPLE), "serve", "--port", "0"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
        first = [None]
        reader = threading.Thread(target=lambda: first.__setitem__(0, cls.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(PATIENCE)
        line = (first[0] or b"").decode().strip()
        if not line.startswith("listening on http://127.0.0.1:"):
            cls.proc.kill()
            raise AssertionError(f"the server did not announce its address: {line!r}")
        cls.url = line.removeprefix("listening on ")

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.kill()
            cls.proc.wait(PATIENCE)
        cls.proc.stdout.close()
        cls.proc.stderr.close()

    def call(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=PATIENCE) as resp:
                return resp.status, resp.headers["Content-Type"], json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], json.loads(e.read())

    def test_capabilities_generate_and_extend(self):
        status, _, caps = self.call("/capabilities")
        self.assertEqual(status, 200)
        self.assertIn("customer", {p["type"] for p in caps["produces"]})
        status, ctype, answer = self.call("/generate", {"type": "customer", "state": "active",
                                                        "attributes": {"country": "US"}, "request_id": "h-0042"})
        self.assertEqual((status, ctype), (200, "application/json"))
        self.assertEqual(answer["data"]["customer_id"], "C0042")
        status, _, answer = self.call("/extend", {"extension": "add-card", "dataset": CUSTOMER})
        self.assertEqual(status, 200)
        self.assertEqual(answer["data"]["payment_method_id"], "pm_1")

    def test_errors_are_problem_json_with_the_right_status(self):
        status, ctype, problem = self.call("/generate", {"type": "customer", "state": "gone"})
        self.assertEqual((status, ctype), (422, "application/problem+json"))
        self.assertIn("cannot generate customer/gone", problem["detail"])
        status, ctype, problem = self.call("/generate", {"type": "x", "state": "raises"})
        self.assertEqual((status, ctype), (500, "application/problem+json"))
        self.assertEqual(problem["detail"], "generate x/raises raised KeyError: 'no-such-key'")
        status, _, problem = self.call("/generate", {"type": "x", "state": "missing-field"})
        self.assertEqual(status, 500)
        self.assertIn("promised field `b.c` is missing from data", problem["detail"])
        status, _, problem = self.call("/nowhere")
        self.assertEqual(status, 404)
        status, _, problem = self.call("/destroy", {})
        self.assertEqual(status, 404)

    def test_lifecycle_over_http(self):
        self.assertEqual(self.call("/cleanup", {"request_id": "r", "dataset": CUSTOMER})[:3:2], (200, {}))
        status, _, answer = self.call("/verify", {"request_id": "r", "dataset": CUSTOMER})
        self.assertEqual((status, answer), (200, {"valid": True, "reason": None}))

    def test_calls_are_served_concurrently(self):
        results = {}

        def first():
            results["first"] = self.call("/generate", {"type": "x", "state": "wait", "attributes": {"role": "first"}})

        t = threading.Thread(target=first)
        t.start()
        results["second"] = self.call("/generate", {"type": "x", "state": "wait", "attributes": {"role": "second"}})
        t.join(PATIENCE)
        self.assertEqual(results["first"][0], 200, results)
        self.assertEqual(results["second"][0], 200, results)

    def test_sigterm_stops_the_server_cleanly(self):
        proc = subprocess.Popen([sys.executable, str(SAMPLE), "serve"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env())
        try:
            self.assertTrue(proc.stdout.readline().startswith(b"listening on http://127.0.0.1:"))
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(PATIENCE), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.stderr.close()


if __name__ == "__main__":
    unittest.main()

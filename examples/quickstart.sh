#!/usr/bin/env bash
# Stockroom in one command, with no external service:
#   1. builds `stockroom` and `stockroom-pool`;
#   2. starts the demo pool: three real generator services (customers,
#      payments, orders) on loopback and the embedded SQLite store in a temp dir;
#   3. runs three CI "jobs" in parallel, shards 0, 1 and 2 of 3, each wrapping its
#      tests with `stockroom run --manifest examples/stockroom.toml`;
#   4. shows what each job got (no two share a dataset), how long it waited for
#      its data, and how long the same states take to build by replaying the
#      generator chain — the cost every job would pay without a stock;
#   5. the per-test mode: one job whose 4 test workers each take their own
#      data from the sidecar's agent (what the pytest and Playwright plugins do);
#   6. the lifecycle calls: a job changes its reusable login customer's
#      password and passes, the pool has it reset (the stored password logs in
#      again), and a consumed order has been cleaned up from the shop.
# Everything it starts is stopped at exit; the temp dir is removed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

echo "==> building stockroom and stockroom-pool (the first build takes a few minutes)"
cargo build -q -p stockroom -p stockroom-pool
bin="$repo/target/debug"

work="$(mktemp -d)"
pool_pid=""
cleanup() {
  if [ -n "$pool_pid" ]; then kill "$pool_pid" 2>/dev/null || true; wait "$pool_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> starting the demo pool (embedded store, three generator services)"
"$bin/stockroom-pool" demo --listen 127.0.0.1:0 --shop-listen 127.0.0.1:0 --ready-file "$work/addr" >"$work/pool.out" 2>"$work/pool.log" &
pool_pid=$!

python3 - "$work" <<'PY'
# Waits for the pool and for warm stock: every state the example manifest asks for.
import json, os, sys, time, urllib.request
work = sys.argv[1]
deadline = time.time() + 60
while not os.path.exists(os.path.join(work, "addr")):
    if time.time() > deadline:
        sys.exit("the demo pool did not start; its log:\n" + open(os.path.join(work, "pool.log")).read())
    time.sleep(0.05)
addr = open(os.path.join(work, "addr")).read().strip()
need = {("customer", "active-with-payment"): 3, ("order", "placed"): 2}
while True:
    try:
        catalog = json.load(urllib.request.urlopen(f"http://{addr}/api/v1/catalog", timeout=5))
        ready = {(t["type"], s["state"]): s["stock"]["ready"] for t in catalog["types"] for s in t["states"]}
        if all(ready.get(k, 0) >= n for k, n in need.items()):
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("stock did not warm up within 60 s; the pool's log:\n" + open(os.path.join(work, "pool.log")).read())
    time.sleep(0.1)
print(f"    pool at http://{addr}, stock is warm")
PY
pool="http://$(cat "$work/addr")"

echo "==> three parallel CI jobs: stockroom run --shard-index N --shard-total 3 -- <tests>"
for shard in 0 1 2; do
  (
    t0=$(date +%s%N)
    set +e
    STOCKROOM_POOL="$pool" T0="$t0" "$bin/stockroom" run --manifest examples/stockroom.toml \
      --shard-index "$shard" --shard-total 3 -- sh -c '
        ready_ms=$(( ($(date +%s%N) - T0) / 1000000 ))
        echo "job $STOCKROOM_SHARD_INDEX/$STOCKROOM_SHARD_TOTAL: data ready after ${ready_ms} ms (lease $STOCKROOM_LEASE_ID)"
        echo "  buyer:  $STOCKROOM_BUYER_ID  customer $STOCKROOM_BUYER_CUSTOMER_ID <$STOCKROOM_BUYER_EMAIL> country $STOCKROOM_BUYER_COUNTRY"
        if [ -n "${STOCKROOM_ORDERS_0_ID:-}" ]; then
          echo "  orders: $STOCKROOM_ORDERS_0_ID ($STOCKROOM_ORDERS_0_ORDER_ID), $STOCKROOM_ORDERS_1_ID ($STOCKROOM_ORDERS_1_ORDER_ID)"
        else
          echo "  orders: none on this shard (the manifest gives them to shard 0)"
        fi
        echo "  datasets file: $STOCKROOM_DATASETS_FILE"
      ' >"$work/job$shard.out" 2>"$work/job$shard.err"
    echo $? >"$work/job$shard.rc"
  ) &
done
wait $(jobs -p | grep -v "^$pool_pid\$") 2>/dev/null || true

status=0
for shard in 0 1 2; do
  rc=$(cat "$work/job$shard.rc" 2>/dev/null || echo "?")
  cat "$work/job$shard.out"
  if [ "$rc" != 0 ]; then
    echo "job $shard: stockroom exited $rc; its log:"; cat "$work/job$shard.err"; status=1
  fi
done

python3 - "$work" "$pool" <<'PY'
# The same states built by replaying the generator chain, as a test's setup
# would without Stockroom: customer new -> verify-email -> add-card -> order placed.
import json, re, sys, time, urllib.request
work, pool = sys.argv[1], sys.argv[2]
urls = dict(re.findall(r"(\w+) (http://[\d.:]+)", open(f"{work}/pool.out").read().splitlines()[1]))

def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))

def dataset(type_, state, answer, prev=None):
    d = dict(prev or {"id": "replay", "type": type_, "attributes": answer.get("attributes", {"country": "DE"})})
    d.update(type=type_, state=state, data=answer["data"], secret_fields=answer.get("secret_fields", []),
             entities=answer.get("entities", []))
    return d

t0 = time.perf_counter()
a = post(urls["customers"] + "/generate", {"type": "customer", "state": "new", "attributes": {"country": "DE"}, "inputs": {}})
customer = dataset("customer", "new", a)
customer = dataset("customer", "active", post(urls["customers"] + "/extend", {"extension": "verify-email", "dataset": customer}), customer)
customer = dataset("customer", "active-with-payment", post(urls["payments"] + "/extend", {"extension": "add-card", "dataset": customer}), customer)
t_customer = time.perf_counter() - t0
post(urls["orders"] + "/generate", {"type": "order", "state": "placed", "attributes": {"country": "DE"}, "inputs": {"customer": customer}})
t_order = time.perf_counter() - t0
print(f"==> replaying the generator chain instead: customer/active-with-payment {t_customer*1000:.0f} ms, "
      f"order/placed {t_order*1000:.0f} ms — for every dataset, in every job")

leases = json.load(urllib.request.urlopen(f"{pool}/api/v1/leases?status=active", timeout=5))["leases"]
consumed = json.load(urllib.request.urlopen(f"{pool}/api/v1/datasets?status=consumed&limit=1000", timeout=5))["datasets"]
print(f"==> after the jobs: {len(leases)} active lease(s); {len(consumed)} dataset(s) consumed by passed jobs, "
      "never handed out again")
PY

echo "==> per-test mode: one job, 4 parallel test workers; each test takes its own data from the sidecar's agent"
cat >"$work/per_test.py" <<'PY'
# Stands in for a test runner with 4 workers (pytest-stockroom and
# @stockroom/test do this for you: docs/plugins/). `stockroom run` serves the
# agent at STOCKROOM_AGENT_URL for the command it runs.
import json, os, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor

agent, token = os.environ["STOCKROOM_AGENT_URL"], os.environ["STOCKROOM_AGENT_TOKEN"]

def call(path, body):
    req = urllib.request.Request(agent + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
    return json.load(urllib.request.urlopen(req, timeout=90))

tests = [f"tests/test_checkout.py::test_pay[{n}]" for n in range(8)]
call("/v1/reserve", {"items": [{"type": "customer", "state": "active-with-payment", "count": len(tests)}]})

def run(n_test):
    n, test = n_test
    take = call("/v1/take", {"test": test, "worker": f"gw{n % 4}", "wait_seconds": 60,
                             "items": [{"name": "buyer", "type": "customer", "state": "active-with-payment"}]})
    buyer = take["datasets"][0]
    call(f"/v1/takes/{take['take_id']}/done", {"outcome": "passed"})
    return test, n % 4, buyer
results = list(ThreadPoolExecutor(4).map(run, enumerate(tests)))
for test, worker, buyer in results:
    print(f"  gw{worker} {test}: {buyer['id']} customer {buyer['data']['customer_id']}")
ids = [b["id"] for _, _, b in results]
print(f"  {len(ids)} tests, {len(set(ids))} different customers; the job's own buyer: {os.environ['STOCKROOM_BUYER_ID']}")
sys.exit(0 if len(set(ids)) == len(ids) else 1)
PY
if ! STOCKROOM_POOL="$pool" "$bin/stockroom" run --manifest examples/stockroom.toml -- python3 "$work/per_test.py" \
    2>"$work/per-test.err"; then
  echo "per-test mode: stockroom run failed; its log:"; cat "$work/per-test.err"; status=1
fi
echo "    in a real suite: pip install ./clients/python, then stockroom run -- pytest -n 4 (docs/plugins/pytest.md)"

echo "==> lifecycle calls: a job changes its login customer's password and passes; the pool resets it"
cat >"$work/login.toml" <<'TOML'
# customer/returning is reusable in the demo: after a passed run it is reset
# (password, status, card as made) and back in stock.
version = 1
[[dataset]]
name = "login"
type = "customer"
state = "returning"
TOML
shop="$(sed -n 's|^Shop API (the system under test): \(http://[^ ]*\)/shop$|\1|p' "$work/pool.out")"
if ! STOCKROOM_POOL="$pool" SHOP_URL="$shop" WORK="$work" "$bin/stockroom" run --manifest "$work/login.toml" -- python3 -c '
# The test: change the password, check the old one no longer logs in.
import json, os, urllib.error, urllib.request
shop, cid = os.environ["SHOP_URL"], os.environ["STOCKROOM_LOGIN_CUSTOMER_ID"]
def post(path, body):
    req = urllib.request.Request(shop + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
login = {"email": os.environ["STOCKROOM_LOGIN_EMAIL"], "password": os.environ["STOCKROOM_LOGIN_PASSWORD"]}
assert post(f"/shop/customers/{cid}/password", {"password": "changed-by-the-test"}) == 200
assert post("/shop/login", login) == 401, "the old password still logs in"
json.dump(dict(login, id=os.environ["STOCKROOM_LOGIN_ID"], customer_id=cid), open(os.environ["WORK"] + "/login.json", "w"))
' 2>"$work/login.err"; then
  echo "lifecycle: stockroom run failed; its log:"; cat "$work/login.err"; status=1
fi
python3 - "$work" "$pool" "$shop" <<'PY' || status=1
# The login customer's history once reset, and a consumed order's cleanup.
import json, sys, time, urllib.error, urllib.request
work, pool, shop = sys.argv[1:4]
def get(url):
    try:
        r = urllib.request.urlopen(url, timeout=5)
        return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None
def settled(id, needle):
    deadline = time.time() + 30
    while True:
        _, view = get(f"{pool}/api/v1/datasets/{id}")
        if view["status"] != "generating" and any(needle in h["reason"] for h in view["history"]):
            return view
        if time.time() > deadline:
            sys.exit(f"{id} never said {needle!r}; its history: {json.dumps(view['history'], indent=1)}")
        time.sleep(0.05)
login = json.load(open(f"{work}/login.json"))
view = settled(login["id"], "reset by generator")
print(f"  {login['id']} (customer {login['customer_id']}), {view['status']} again; the end of its history:")
for h in view["history"][-3:]:
    print(f"    {h['from']} → {h['to']}: {h['reason']}")
req = urllib.request.Request(f"{shop}/shop/login", data=json.dumps({"email": login["email"], "password": login["password"]}).encode(),
                             headers={"content-type": "application/json"})
print(f"  its stored password logs in again: HTTP {urllib.request.urlopen(req, timeout=5).status}")
_, consumed = get(f"{pool}/api/v1/datasets?type=order&state=placed&status=consumed&limit=1")
order = consumed["datasets"][0]
view = settled(order["id"], "cleanup: removed")
code, _ = get(f"{shop}/shop/orders/{order['data']['order_id']}")
print(f"  a consumed order, {order['id']} ({order['data']['order_id']}): {view['history'][-1]['reason']}; the shop now answers {code}")
PY

if [ "$status" = 0 ]; then
  echo "==> every job got its own data. Next: docs/sidecar.md (the CLI), docs/ci/ (your CI), docs/plugins/ (per-test data in pytest and Playwright), docs/generators.md (your data)."
fi
exit "$status"

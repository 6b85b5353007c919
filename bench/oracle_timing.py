"""Issue 13, item 2: does the public answer's latency tell who is a lead? Times sequential
submissions for four kinds of address (new, known, suppressed by erasure, spam), interleaved in
random order so each kind sees the same conditions, against a release build; prints the median
and p90 per kind in ms.

Usage: cargo build --release --bin inlet && python3 bench/oracle_timing.py sqlite|pg [N] [FORM]
(pg: a throwaway database on 127.0.0.1:5432 as postgres, dropped at the end). FORM: `contact`
(default) or `whitepaper` (the demo's gated download with a consent checkbox)."""
import json, os, statistics, subprocess, sys, tempfile, time, urllib.request, random
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import probe  # noqa: E402

db = sys.argv[1]
port = 18111 if db == 'sqlite' else 18112
tmp = tempfile.mkdtemp()
url, drop = probe.database(db, tmp, "timing")
env = dict(os.environ, DATABASE_URL=url, INLET_BIND=f"127.0.0.1:{port}", INLET_LOG_LEVEL="error",
           INLET_MAIL_DIR=f"{tmp}/mail", INLET_OUTBOX_WORKER_ENABLED="false", INLET_RATE_LIMIT_ENABLED="false",
           INLET_ADMIN_TOKEN="timing-token-0123456789abcdef",
           INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_NETWORK_PER_HOUR="0",
           INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_RECIPIENT_PER_HOUR="0")
p, base = probe.serve(env, port)

FORM = sys.argv[3] if len(sys.argv) > 3 else "contact"


def post(body):
    req = urllib.request.Request(base + f"/v1/forms/{FORM}/submissions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        r.read()
        assert r.status == 201
    return (time.perf_counter() - t) * 1000

def body(email, spam=False):
    b = {"name": "Ann", "email": email, "_elapsed_ms": 5000, "_idem": os.urandom(8).hex()}
    if FORM == "whitepaper": b["consent"] = "on"
    if spam: b["_gotcha"] = "x"
    return b

N = int(sys.argv[2]) if len(sys.argv) > 2 else 600
for i in range(N):
    post(body(f"known{i}@example.com"))
    post(body(f"gone{i}@example.com"))
# erase the gone ones (suppressed)
def admin(method, path):
    req = urllib.request.Request(base + path, method=method, headers={"Authorization": "Bearer timing-token-0123456789abcdef"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"{}")
cursor = None
ids = []
while True:
    q = "/v1/admin/leads?limit=500" + (f"&cursor={cursor}" if cursor else "")
    page = admin("GET", q)
    ids += [l["id"] for l in page["leads"] if l["email"].startswith("gone")]
    cursor = page.get("next_cursor")
    if not cursor: break
for lid in ids:
    admin("DELETE", f"/v1/admin/leads/{lid}")
times = {"new": [], "known": [], "suppressed": [], "spam": []}
for i in range(N):
    order = list(times)
    random.shuffle(order)
    for k in order:
        email = {"new": f"new{i}@example.com", "known": f"known{i}@example.com",
                 "suppressed": f"gone{i}@example.com", "spam": f"bot{i}@example.com"}[k]
        times[k].append(post(body(email, spam=(k == "spam"))))
for k, v in times.items():
    v.sort()
    print(f"{db} {k:10s} median {statistics.median(v):.2f} ms  p90 {v[int(len(v)*0.9)]:.2f} ms  n={len(v)}")
p.terminate(); p.wait()
drop()

"""Does the console's "email me a sign-in link" answer tell, by its timing, whether an address
has an account? Times sequential requests for an address with an account and one without,
interleaved in random order, against a release build; prints the median and p90 per kind in ms.

Usage: cargo build --release --bin inlet && python3 bench/signin_timing.py sqlite|pg [N]
(pg: a throwaway database on 127.0.0.1:5432 as postgres, dropped at the end). The sign-in
throttles are off for the probe (a real attacker would be throttled long before N)."""
import http.cookiejar, os, random, re, statistics, subprocess, sys, tempfile, time, urllib.parse, urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import probe  # noqa: E402

db = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 800
port = 18113 if db == 'sqlite' else 18114
tmp = tempfile.mkdtemp()
url, drop = probe.database(db, tmp, "signin")
env = dict(os.environ, DATABASE_URL=url, INLET_BIND=f"127.0.0.1:{port}", INLET_LOG_LEVEL="error",
           INLET_MAIL_DIR=f"{tmp}/mail", INLET_OUTBOX_WORKER_ENABLED="false",
           INLET_ADMIN_TOKEN="timing-token-0123456789abcdef",
           INLET_CONSOLE__SIGN_IN_ATTEMPTS_PER_ACCOUNT="0", INLET_CONSOLE__SIGN_IN_ATTEMPTS_PER_IP="0")
subprocess.run([probe.INLET, "migrate"], env=env, check=True, capture_output=True)
subprocess.run([probe.INLET, "users", "add", "mo@example.com", "--role", "marketer"], env=env, check=True,
               capture_output=True)
p, base = probe.serve(env, port)


# The sign-in form's token is bound to a cookie, as in a browser.
browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def ask(email):
    with browser.open(base + "/console/login") as r:
        token = re.search(r'name="_login" value="([^"]+)"', r.read().decode()).group(1)
    data = urllib.parse.urlencode({"email": email, "_login": token}).encode()
    t = time.perf_counter()
    with browser.open(urllib.request.Request(base + "/console/login/link", data=data)) as r:
        r.read()
        assert r.status == 200
    return (time.perf_counter() - t) * 1000


times = {"account": [], "no account": []}
try:
    for i in range(N):
        kinds = list(times)
        random.shuffle(kinds)
        for k in kinds:
            times[k].append(ask("mo@example.com" if k == "account" else f"nobody{i}@example.com"))
finally:
    p.terminate()
for k, v in times.items():
    v.sort()
    print(f"{db} {k:10s} median {statistics.median(v):.2f} ms  p90 {v[int(len(v) * 0.9)]:.2f} ms  n={len(v)}")
p.wait()
drop()

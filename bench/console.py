#!/usr/bin/env python3
"""The console's targets (issue "The marketer's console"), on a database that already holds
BENCH_PRELOAD (1,000,000) leads with a submission and a sent follow-up each, spread over the
past year (examples/seed.rs):

- leads: the console's lead list (newest first), an address search, a name search (narrow), a
  company search (broad: a fifth of all leads match), a campaign filter, a status filter, a
  form filter, the next page, and the deliveries page (all, and sent), as a signed-in browser
  asks for them: p95 < 100 ms;
- reports: GET /v1/admin/stats for 90 days (by form, by source, by campaign per week) and the
  console's 90-day overview: p95 < 150 ms;
- the view beacon (POST /v1/forms/contact/views as the embed script sends it, 100,000 client
  IPs) against a bare actix-web ceiling answering the same body in the same run: >= 50 %.

Latency runs use 4 connections for BENCH_DURATION (10 s); the beacon 64 connections, BENCH_RUNS
(3) runs, median. The reports' daily rollup is built by the server's background job a minute
after startup; the script asks for one report first (its time is printed) so the runs measure
the steady state.

    bench/console.sh                 # BENCH_TARGETS="sqlite postgres", BENCH_PRELOAD=1000000
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import submissions as sb  # noqa: E402  (the shared harness: serve, stop, seed, psql, RSS)

ROOT = sb.ROOT
URL = sb.URL
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
TARGETS = os.environ.get("BENCH_TARGETS", "sqlite postgres").split()
TOKEN = "bench-admin-token-0123456789abcdef"


def wrk_get(path, headers, conns=4):
    env = dict(os.environ, BENCH_PATH=path, **headers)
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{DURATION}s", "-s", str(ROOT / "bench/get.lua"), URL],
                         capture_output=True, text=True, env=env, check=True).stdout
    pct = dict(re.findall(r"(p50|p95|p99|max|non2xx)=(\d+)", out))
    # Timeouts and other socket errors are answers that never came: a miss, not a fast run.
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": int(pct["p50"]) / 1000, "p95": int(pct["p95"]) / 1000, "p99": int(pct["p99"]) / 1000,
            "non2xx": int(pct["non2xx"]), "errors": sum(int(x) for x in sock.groups()) if sock else 0}


def wrk_views(conns=64):
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{sb.DURATION}s", "--latency", "-s",
                          str(ROOT / "bench/view.lua"), URL], capture_output=True, text=True, check=True).stdout
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    dist = dict(re.findall(r"\s(50|99)%\s+(\S+)", out))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p99": sb.to_ms(dist["99"]), "non2xx": non2xx}


def sign_in(db_url):
    """A console session, made as an operator makes one: `inlet users add`, then the link."""
    out = subprocess.run([str(ROOT / "target/release/inlet"), "users", "add", "bench@example.com", "--role", "admin"],
                         env=dict(os.environ, DATABASE_URL=db_url, INLET_BIND=f"127.0.0.1:{sb.PORT}"),
                         capture_output=True, text=True, check=True).stdout
    link = re.search(r"(http://\S+/console/link/\S+)", out).group(1)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(urllib.request.Request(link, data=b"", method="POST"), timeout=10)
    except urllib.error.HTTPError as e:
        cookie = e.headers.get("Set-Cookie")
    return cookie.split(";")[0]


def first_cursor(cookie):
    req = urllib.request.Request(URL + "/console/leads", headers={"Cookie": cookie})
    html = urllib.request.urlopen(req, timeout=30).read().decode()
    return re.search(r"cursor=([0-9]+_[0-9a-f-]+)", html).group(1)


def timed(path, headers):
    started = time.time()
    urllib.request.urlopen(urllib.request.Request(URL + path, headers=headers), timeout=120).read()
    return time.time() - started


def run_engine(label, db_url, tmp):
    env = sb.inlet_env(db_url, tmp, INLET_ADMIN_TOKEN=TOKEN, INLET_TRUSTED_PROXIES="127.0.0.1")
    proc = sb.serve([str(ROOT / "target/release/inlet"), "serve"], env)
    results = {}
    try:
        cookie = sign_in(db_url)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        today = time.strftime("%Y-%m-%d", time.gmtime())
        start = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 89 * 86400))
        results["first report (rolls up 88 days)"] = timed(f"/v1/admin/stats?from={start}&to={today}", auth)
        cursor = first_cursor(cookie)
        page = {"BENCH_COOKIE": cookie}
        api = {"BENCH_AUTH": f"Bearer {TOKEN}"}
        latency = [
            ("leads", "/console/leads", page),
            # The seed starts each address, name and company with three letters of its number
            # (lead 4217: "fgg"), spread over the alphabet as real ones are.
            ("leads", "/console/leads?q=f", page),
            ("leads", "/console/leads?q=fgg%20reader%204217", page),
            ("leads", "/console/leads?q=fg", page),
            ("leads", "/console/leads?campaign=campaign-7", page),
            ("leads", "/console/leads?status=active", page),
            ("leads", "/console/deliveries", page),
            ("leads", "/console/deliveries?status=sent", page),
            ("leads", "/console/leads?form=contact&order=oldest", page),
            ("leads", f"/console/leads?cursor={cursor}", page),
            ("reports", f"/v1/admin/stats?from={start}&to={today}", api),
            ("reports", f"/v1/admin/stats?from={start}&to={today}&group_by=source", api),
            ("reports", f"/v1/admin/stats?from={start}&to={today}&group_by=utm_campaign&granularity=week", api),
            ("reports", "/console/overview?days=90", page),
        ]
        results["latency"] = [(kind, path, wrk_get(path, headers)) for kind, path, headers in latency]
        results["views"] = [wrk_views() for _ in range(RUNS)]
        results["rss"] = sb.peak_rss_mib(proc.pid)
    finally:
        sb.stop(proc)
    return results


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "inlet", "--example", "bare",
                    "--example", "seed"], cwd=ROOT, check=True)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        bare = sb.serve([str(ROOT / "target/release/examples/bare"), f"127.0.0.1:{sb.PORT}"], {})
        try:
            report["bare"] = [wrk_views() for _ in range(RUNS)]
        finally:
            sb.stop(bare)
        if "sqlite" in TARGETS:
            db = Path(tmp) / "console.db"
            secs = sb.seed(f"sqlite://{db}")
            report["sqlite"] = (secs, run_engine("sqlite", f"sqlite://{db}", tmp))
        if "postgres" in TARGETS:
            name = f"inlet_console_{int(time.time())}"
            sb.psql(sb.PG_ADMIN, f"CREATE DATABASE {name}")
            pg_url = sb.PG_ADMIN.rsplit("/", 1)[0] + "/" + name
            try:
                secs = sb.seed(pg_url)
                report["postgres"] = (secs, run_engine("postgres", pg_url, tmp))
            finally:
                sb.psql(sb.PG_ADMIN, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    bare_rps = statistics.median(r["rps"] for r in report["bare"])
    lines = [f"Machine: {os.cpu_count()} cores. {sb.PRELOAD:,} leads preloaded per engine. "
             f"Latency: wrk -t2 -c4, {DURATION} s per URL. Beacon: wrk -t2 -c64, {RUNS} x {sb.DURATION} s, median.", "",
             f"bare ceiling (the beacon's body into a struct, 204): {bare_rps:,.0f} req/s", "",
             "| engine | what | URL | req/s | p50 ms | p95 ms | p99 ms | non-2xx | target | met? |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for engine in ["sqlite", "postgres"]:
        if engine not in report:
            continue
        secs, r = report[engine]
        for kind, path, m in r["latency"]:
            target = 100 if kind == "leads" else 150
            ok = m["rps"] > 0 and m["p95"] < target and m["non2xx"] == 0 and m.get("errors", 0) == 0
            lines.append(f"| {engine} | {kind} | `{path.split('&to=')[0].replace('|', '/')}…` | {m['rps']:,.0f} | {m['p50']:.1f} | "
                         f"{m['p95']:.1f} | {m['p99']:.1f} | {m['non2xx']} | p95 < {target} ms | {'yes' if ok else 'NO'} |")
        rps = statistics.median(v["rps"] for v in r["views"])
        p99 = statistics.median(v["p99"] for v in r["views"])
        non2xx = sum(v["non2xx"] for v in r["views"])
        summary.append(f"{engine}: seeded in {secs:.0f} s; first report (rolls up 88 days) "
                       f"{r['first report (rolls up 88 days)'] * 1000:.0f} ms; view beacon {rps:,.0f} req/s = "
                       f"{rps / bare_rps:.0%} of bare (target >= 50 %: {'yes' if rps / bare_rps >= 0.5 else 'NO'}), "
                       f"p99 {p99:.1f} ms, non-2xx {non2xx}; peak RSS {r['rss']:.1f} MiB")
    text = "\n".join(lines + [""] + summary)
    print(text)
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"console-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

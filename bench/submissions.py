#!/usr/bin/env python3
"""Submission throughput: Inlet on SQLite and PostgreSQL against the ceiling (same actix-web
stack, same parsing and validation, no database), driven by wrk with unique emails.

    bench/submissions.sh            # 16 and 64 connections, 15 s per run, 3 runs, medians

Environment: BENCH_DURATION (s), BENCH_RUNS, BENCH_CONNECTIONS ("16 64"),
INLET_BENCH_POSTGRES_URL (admin URL; a fresh database is created and dropped).
Prints a Markdown report and writes it to bench/results/.
"""
import os
import re
import sqlite3
import statistics
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DURATION = int(os.environ.get("BENCH_DURATION", "15"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CONNS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "16 64").split()]
PG_ADMIN = os.environ.get("INLET_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PORT = 18080
URL = f"http://127.0.0.1:{PORT}"


def wait_ready(proc, path="/healthz"):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early with {proc.returncode} (see {tempfile.gettempdir()}/inlet-bench.log)")
        try:
            with urllib.request.urlopen(URL + path, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.05)
    proc.kill()
    sys.exit("server did not become ready")


def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n if unit == "ms" else n * 1000 if unit == "s" else n * 60000


def wrk(conns, env_extra, label):
    env = dict(os.environ, BENCH_PREFIX=f"{label}-{conns}-{time.time_ns()}", **env_extra)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{DURATION}s", "--latency", "-s", str(ROOT / "bench/submit.lua"), URL],
        capture_output=True, text=True, env=env, check=True).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in sock.groups()) if sock else 0
    lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    dist = dict(re.findall(r"\s(50|99)%\s+(\S+)", out))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": to_ms(dist["50"]), "p99": to_ms(dist["99"]), "max": to_ms(lat.group(3)),
        "ok": reqs - non2xx, "non2xx": non2xx, "errors": errors,
    }


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metric(name):
    with urllib.request.urlopen(URL + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return float("nan")


def port_taken():
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", PORT)) == 0


def serve(cmd, env):
    # Something else on the port would answer wrk instead of the target: refuse to measure it.
    if port_taken():
        sys.exit(f"bench: 127.0.0.1:{PORT} is already in use; stop whatever listens there first")
    proc = subprocess.Popen(cmd, env=dict(os.environ, **env), stdout=subprocess.DEVNULL,
                            stderr=open(Path(tempfile.gettempdir()) / "inlet-bench.log", "w"))
    wait_ready(proc)
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def inlet_env(db_url, tmp, **extra):
    env = {
        "DATABASE_URL": db_url, "INLET_BIND": f"127.0.0.1:{PORT}", "INLET_RATE_LIMIT_ENABLED": "false",
        "INLET_LOG_LEVEL": "warn", "INLET_MAIL_DIR": str(Path(tmp) / "mail"),
        "INLET_OUTBOX_WORKER_ENABLED": "false", "INLET_DATABASE_MAX_CONNECTIONS": "8",
    }
    env.update(extra)
    return env


def psql(url, sql):
    return subprocess.run(["psql", "-tAq", url, "-c", sql], capture_output=True, text=True, check=True).stdout.strip()


def run_target(label, cmd, env, count=None, xff=False, conns=None, runs=None):
    proc = serve(cmd, env)
    results = {}
    for c in conns or CONNS:
        results[c] = [wrk(c, {"BENCH_XFF": "1"} if xff else {}, label) for _ in range(runs or RUNS)]
    extra = {"tracked_ips": metric("inlet_rate_limiter_tracked_ips")} if xff else {}
    rss = peak_rss_mib(proc.pid)
    stop(proc)
    stored = count() if count else None
    return results, rss, stored, extra


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "inlet", "--example", "ceiling",
                    "--example", "smtp_sink"], cwd=ROOT, check=True)
    inlet = str(ROOT / "target/release/inlet")
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        report["ceiling"] = run_target("ceiling", [str(ROOT / "target/release/examples/ceiling"), f"127.0.0.1:{PORT}"], {})

        db = Path(tmp) / "bench.db"
        count_sqlite = lambda: sqlite3.connect(db).execute("SELECT COUNT(*) FROM leads").fetchone()[0]
        report["sqlite"] = run_target("sqlite", [inlet, "serve"], inlet_env(f"sqlite://{db}", tmp), count_sqlite)

        name = f"inlet_bench_{int(time.time())}"
        psql(PG_ADMIN, f"CREATE DATABASE {name}")
        pg_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        try:
            report["postgres"] = run_target("postgres", [inlet, "serve"], inlet_env(pg_url, tmp),
                                            lambda: int(psql(pg_url, "SELECT COUNT(*) FROM leads")))
        finally:
            psql(PG_ADMIN, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

        # The same SQLite load while the outbox worker sends every follow-up to a local SMTP sink.
        sink = subprocess.Popen([str(ROOT / "target/release/examples/smtp_sink"), "127.0.0.1:18025"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            db3 = Path(tmp) / "bench-worker.db"
            proc_env = inlet_env(f"sqlite://{db3}", tmp, INLET_OUTBOX_WORKER_ENABLED="true",
                                 INLET_SMTP_URL="smtp://127.0.0.1:18025")
            proc = serve([inlet, "serve"], proc_env)
            rows = [wrk(64, {}, "worker") for _ in range(RUNS)]
            sent = metric('inlet_emails_sent_total{kind="follow_up"}')
            rss = peak_rss_mib(proc.pid)
            stop(proc)
            report["worker"] = (rows, rss, sent)
        finally:
            sink.kill()

        db2 = Path(tmp) / "bench-ips.db"
        report["ips"] = run_target(
            "ips", [inlet, "serve"],
            inlet_env(f"sqlite://{db2}", tmp, INLET_RATE_LIMIT_ENABLED="true", INLET_TRUSTED_PROXIES="127.0.0.1",
                      INLET_RATE_LIMIT_PER_IP_PER_MINUTE="100000", INLET_RATE_LIMIT_PER_FORM_PER_SECOND="10000000"),
            lambda: sqlite3.connect(db2).execute("SELECT COUNT(*) FROM leads").fetchone()[0],
            xff=True, conns=[64], runs=1)

    ceiling = {c: median(rows, "rps") for c, rows in report["ceiling"][0].items()}
    lines = [f"Runs: {RUNS} x {DURATION} s per row, wrk -t2, medians. Machine: {os.cpu_count()} cores.", "",
             "| target | conns | req/s | ratio to ceiling | p50 ms | p99 ms | max ms | non-2xx | socket errors | peak RSS MiB | leads stored / 2xx |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for target in ["ceiling", "sqlite", "postgres"]:
        results, rss, stored, _ = report[target]
        ok_total = sum(r["ok"] for rows in results.values() for r in rows)
        # wrk stops with up to one request per connection in flight: the server commits those,
        # wrk never counts their answers. So stored = 2xx + (at most) that many.
        in_flight = sum(c * len(rows) for c, rows in results.items())
        good = stored is not None and ok_total <= stored <= ok_total + in_flight
        check = "-" if stored is None else f"{stored} / {ok_total} (+{stored - ok_total} in flight at wrk's stop, max {in_flight}) {'OK' if good else 'MISMATCH'}"
        for c, rows in results.items():
            rps = median(rows, "rps")
            lines.append(f"| {target} | {c} | {rps:,.0f} | {rps / ceiling[c]:.0%} | {median(rows, 'p50'):.2f} | "
                         f"{median(rows, 'p99'):.2f} | {median(rows, 'max'):.1f} | {sum(r['non2xx'] for r in rows)} | "
                         f"{sum(r['errors'] for r in rows)} | {rss:.1f} | {check} |")
    results, rss, stored, extra = report["ips"]
    r = results[64][0]
    lines += ["", "100,000 distinct client IPs (X-Forwarded-For through a trusted proxy, per-IP limiter on), SQLite, 64 connections, one run:", "",
              f"req/s {r['rps']:,.0f}, p99 {r['p99']:.2f} ms, non-2xx {r['non2xx']}, peak RSS {rss:.1f} MiB, "
              f"IPs tracked by the limiter at the end {extra['tracked_ips']:.0f}, leads stored {stored} / 2xx {r['ok']}"]
    rows, rss, sent = report["worker"]
    rps = median(rows, "rps")
    sqlite64 = median(report["sqlite"][0][64], "rps")
    lines += ["", "SQLite, 64 connections, while the outbox worker sends every follow-up to a local SMTP sink:", "",
              f"req/s {rps:,.0f} ({rps / sqlite64:.0%} of the same run without the worker, {rps / ceiling[64]:.0%} of the ceiling), "
              f"p99 {median(rows, 'p99'):.2f} ms, non-2xx {sum(r['non2xx'] for r in rows)}, peak RSS {rss:.1f} MiB, "
              f"follow-ups sent meanwhile {sent:,.0f} of {sum(r['ok'] for r in rows):,} accepted"]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"submissions-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

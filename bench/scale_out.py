#!/usr/bin/env python3
"""Scale-out: one Inlet instance versus two on one PostgreSQL database, driven by wrk the way
the embed script submits (bench/submit.lua: attribution and an idempotency key on every
request), from 100,000 distinct client IPs (X-Forwarded-For through a trusted proxy), with the
limits on (set high enough that nothing is refused, so every request pays for its checks: the
per-IP and per-form limits and the caps on mail to unconfirmed addresses).

Four shapes, all running at once on one database preloaded with BENCH_PRELOAD (1,000,000)
leads, measured in turns (round after round, each round starting one shape later, so the
machine's drift and the database's own cycles hit each alike):

- one instance, limits in memory (the single-instance baseline);
- one instance, limits shared through Redis (the cost of the round trips);
- two instances, limits in memory, wrk split over both;
- two instances, limits shared through Redis, wrk split over both.

    bench/scale_out.sh       # 4 rounds of 12 s per shape at 64 connections

Environment: BENCH_DURATION (s), BENCH_RUNS (rounds), BENCH_PRELOAD, INLET_BENCH_POSTGRES_URL
(admin URL; a fresh database is created and dropped). Prints a Markdown report and writes it
to bench/results/.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import submissions as sb  # noqa: E402  (the submission benchmark's wrk driver and seeding)

ROOT = sb.ROOT
CONNS = 64
REDIS_PORT = 18379
RUNS = int(os.environ.get("BENCH_RUNS", "4"))
DURATION = int(os.environ.get("BENCH_DURATION", "12"))
PORTS = {"one": [18081], "one+redis": [18082], "two": [18083, 18084], "two+redis": [18085, 18086]}


def url(port):
    return f"http://127.0.0.1:{port}"


def wait_ready(port, proc):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"inlet on {port} exited early ({proc.returncode})")
        try:
            with urllib.request.urlopen(url(port) + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"inlet on {port} did not become ready")


def metric(port, name):
    with urllib.request.urlopen(url(port) + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return float("nan")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_info(field):
    out = subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "INFO", "all"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return "?"


def run_shape(ports):
    """wrk on each instance at once (64 connections split), summed."""
    share = CONNS // len(ports)
    procs = [sb.start_wrk(share, {"BENCH_XFF": "1"}, f"scale-{p}", DURATION, url=url(p), threads=2 // len(ports))
             for p in ports]
    rows = [sb.parse_wrk(p.communicate()[0]) for p in procs]
    return {
        "rps": sum(r["rps"] for r in rows), "p99": max(r["p99"] for r in rows),
        "ok": sum(r["ok"] for r in rows), "non2xx": sum(r["non2xx"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
    }


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "inlet", "--example", "seed"],
                   cwd=ROOT, check=True)
    inlet = str(ROOT / "target/release/inlet")
    name = f"inlet_bench_scale_{int(time.time())}"
    sb.psql(sb.PG_ADMIN, f"CREATE DATABASE {name}")
    pg_url = sb.PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    redis = subprocess.Popen(["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    procs = {}
    report = {shape: [] for shape in PORTS}
    try:
        seeded = sb.seed(pg_url)
        with tempfile.TemporaryDirectory() as tmp:
            for shape, ports in PORTS.items():
                for port in ports:
                    env = sb.inlet_env(
                        pg_url, tmp, INLET_BIND=f"127.0.0.1:{port}", INLET_RATE_LIMIT_ENABLED="true",
                        INLET_TRUSTED_PROXIES="127.0.0.1",
                        INLET_RATE_LIMIT__PER_IP_PER_MINUTE="100000", INLET_RATE_LIMIT__PER_IP_BURST="1000",
                        INLET_RATE_LIMIT__PER_FORM_PER_SECOND="10000000",
                        INLET_RATE_LIMIT__PER_FORM_BURST="10000000",
                        INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_NETWORK_PER_HOUR="10000000",
                        INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_RECIPIENT_PER_HOUR="1000",
                        INLET_SPAM__BURST="0")
                    if "redis" in shape:
                        env["INLET_REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}"
                    # Two instances get the writers and connections one would have.
                    if len(ports) == 2:
                        env["INLET_WORKERS"] = "1"
                        env["INLET_WRITER__POSTGRES_WRITERS"] = "1"
                    proc = subprocess.Popen([inlet, "serve"], env=dict(os.environ, **env),
                                            stdout=subprocess.DEVNULL,
                                            stderr=open(Path(tmp) / f"inlet-{port}.log", "w"))
                    procs[port] = proc
                    wait_ready(port, proc)
            before = int(sb.psql(pg_url, "SELECT COUNT(*) FROM leads"))
            redis_cpu = 0.0
            shapes = list(PORTS.items())
            for r in range(RUNS):
                for shape, ports in shapes[r % len(shapes):] + shapes[:r % len(shapes)]:
                    cpu = cpu_seconds(redis.pid)
                    row = run_shape(ports)
                    row["redis_cpu"] = cpu_seconds(redis.pid) - cpu
                    report[shape].append(row)
                    if "redis" in shape:
                        redis_cpu += row["redis_cpu"]
            stored = int(sb.psql(pg_url, "SELECT COUNT(*) FROM leads")) - before
            shared = [p for s, ps in PORTS.items() if "redis" in s for p in ps]
            fallbacks = sum(metric(p, "inlet_redis_fallbacks_total") for p in shared)
            early = sum(metric(p, "inlet_redis_early_admits_total") for p in shared)
            late = sum(metric(p, "inlet_redis_late_refusals_total") for p in shared)
            keys = redis_info("db0")
            if keys == "?":
                keys = "no keys (every one had expired)"
            memory = redis_info("used_memory_human")
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait()
        redis.terminate()
        sb.psql(sb.PG_ADMIN, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    med = {s: statistics.median(r["rps"] for r in rows) for s, rows in report.items()}
    ok_total = sum(r["ok"] for rows in report.values() for r in rows)
    in_flight = CONNS * RUNS * len(PORTS)
    check = "OK" if ok_total <= stored <= ok_total + in_flight else "MISMATCH"
    lines = [
        f"PostgreSQL preloaded with {sb.PRELOAD:,} leads in {seeded:.0f} s. {RUNS} rounds × {DURATION} s per "
        f"shape at {CONNS} connections (two instances: {CONNS // 2} each, one wrk thread each), medians; "
        f"X-Forwarded-For from 100,000 client IPs; limits on, none reached. Machine: {os.cpu_count()} cores.", "",
        "| shape | req/s (median) | ÷ one instance | rounds | p99 ms (worst instance, median) | non-2xx | socket errors | Redis CPU s per round |",
        "|---|---|---|---|---|---|---|---|"]
    for shape, rows in report.items():
        lines.append(
            f"| {shape} | {med[shape]:,.0f} | {med[shape] / med['one']:.0%} | "
            f"{' / '.join(format(r['rps'], ',.0f') for r in rows)} | {statistics.median(r['p99'] for r in rows):.1f} | "
            f"{sum(r['non2xx'] for r in rows)} | {sum(r['errors'] for r in rows)} | "
            f"{statistics.median(r['redis_cpu'] for r in rows):.2f} |")
    lines += ["",
              f"Redis overhead on one instance: {1 - med['one+redis'] / med['one']:.1%} of its throughput "
              f"(target ≤ 10 %). Redis used {redis_cpu:.1f} CPU s over the Redis rounds; at the end it held "
              f"{keys} ({memory}); fallbacks to the local limiter: {fallbacks:.0f}; admitted before Redis "
              f"answered: {early:,.0f}, of which Redis then found over a limit: {late:.0f}.",
              f"Leads stored {stored:,} / 2xx {ok_total:,} (+ at most {in_flight} in flight at wrk's stops): {check}."]
    sb.write_report("scale-out", lines)


if __name__ == "__main__":
    main()

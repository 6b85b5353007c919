#!/usr/bin/env python3
"""Submission throughput, driven by wrk the way the embed script submits (form-urlencoded
fields and attribution, a fresh idempotency key on every request, unique emails), against two
ceilings measured in the same run:

- bare: actix-web reading the same body into a struct and answering 201 (examples/bare.rs);
- validation: the same stack with Inlet's parsing and validation, no database (examples/ceiling.rs).

Inlet runs on SQLite and on PostgreSQL, each on a database that already holds BENCH_PRELOAD
(1,000,000) leads with a submission and a sent follow-up each (examples/seed.rs, the store's bulk
seeding), then a growth series: BENCH_GROWTH_RUNS (6) runs of BENCH_GROWTH_DURATION (10 s) back to
back at 64 connections on that database, last / first. sqlite-tmpfs runs the same preloaded
SQLite database from /dev/shm (64 connections): the engine's one writer with no disk to wait for.

    bench/submissions.sh            # 16 and 64 connections, 15 s per run, 3 runs, medians

Environment: BENCH_DURATION (s), BENCH_RUNS, BENCH_CONNECTIONS ("16 64"), BENCH_PRELOAD,
BENCH_GROWTH_RUNS, BENCH_GROWTH_DURATION, BENCH_TARGETS ("sqlite sqlite-tmpfs postgres extras"),
INLET_BENCH_POSTGRES_URL (admin URL; a fresh database is created and dropped).
Prints a Markdown report and writes it to bench/results/.
"""
import os
import re
import shutil
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
PRELOAD = int(os.environ.get("BENCH_PRELOAD", "1000000"))
GROWTH_RUNS = int(os.environ.get("BENCH_GROWTH_RUNS", "6"))
GROWTH_DURATION = int(os.environ.get("BENCH_GROWTH_DURATION", "10"))
TARGETS = os.environ.get("BENCH_TARGETS", "sqlite sqlite-tmpfs postgres extras").split()
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


def wrk(conns, env_extra, label, duration=None, url=URL, threads=2):
    return parse_wrk(start_wrk(conns, env_extra, label, duration, url, threads).communicate()[0])


def start_wrk(conns, env_extra, label, duration=None, url=URL, threads=2):
    """wrk running in the background (several at once drive several instances)."""
    env = dict(os.environ, BENCH_PREFIX=f"{label}-{conns}-{time.time_ns()}", **env_extra)
    return subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration or DURATION}s", "--latency", "-s",
         str(ROOT / "bench/submit.lua"), url], stdout=subprocess.PIPE, text=True, env=env)


def parse_wrk(out):
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
        # wrk is one client network; real traffic comes from many, so the mail caps stay off.
        "INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_NETWORK_PER_HOUR": "0",
        "INLET_RATE_LIMIT__UNCONFIRMED_MAIL_PER_RECIPIENT_PER_HOUR": "0",
        "INLET_LOG_LEVEL": "warn", "INLET_MAIL_DIR": str(Path(tmp) / "mail"),
        "INLET_OUTBOX_WORKER_ENABLED": "false", "INLET_DATABASE_MAX_CONNECTIONS": "8",
    }
    env.update(extra)
    return env


def psql(url, sql):
    return subprocess.run(["psql", "-tAq", url, "-c", sql], capture_output=True, text=True, check=True).stdout.strip()


def run_target(label, cmd, env, count=None, xff=False, conns=None, runs=None, growth=False, preloaded=False):
    before = count() if count and preloaded else 0
    proc = serve(cmd, env)
    results = {}
    for c in conns or CONNS:
        results[c] = [wrk(c, {"BENCH_XFF": "1"} if xff else {}, label) for _ in range(runs or RUNS)]
    extra = {"tracked_ips": metric("inlet_rate_limiter_tracked_ips")} if xff else {}
    stored = None
    if growth:
        # The growth series runs after the count check's runs: count those first.
        stored = count() - before if count else None
        extra["growth"] = [wrk(64, {}, f"{label}-growth", GROWTH_DURATION) for _ in range(GROWTH_RUNS)]
    rss = peak_rss_mib(proc.pid)
    stop(proc)
    if stored is None and count:
        stored = count() - before
    return results, rss, stored, extra


def seed(url):
    started = time.time()
    subprocess.run([str(ROOT / "target/release/examples/seed"), url, str(PRELOAD)], check=True,
                   stderr=subprocess.DEVNULL)
    return time.time() - started


def sqlite_without_disk(inlet, db, tmp):
    """The same preloaded SQLite database copied into memory (tmpfs), 64 connections: what the
    engine's one writer does when no write waits for a disk, so the report tells the disk's
    share of the gap from the writer's own."""
    shm = Path("/dev/shm")
    size = db.stat().st_size
    if not shm.is_dir() or shutil.disk_usage(shm).free < 3 * size:
        print(f"bench: SKIPPED sqlite-tmpfs: /dev/shm is missing or has less than {3 * size >> 20} MiB free",
              file=sys.stderr)
        return None
    copy = shm / f"inlet-bench-{os.getpid()}.db"
    try:
        shutil.copyfile(db, copy)
        count = lambda: sqlite3.connect(copy).execute("SELECT COUNT(*) FROM leads").fetchone()[0]
        return run_target("sqlite-tmpfs", [inlet, "serve"], inlet_env(f"sqlite://{copy}", tmp), count,
                          conns=[64], preloaded=True)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)


def write_report(name, lines):
    """Prints the Markdown report and keeps it in bench/results/."""
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(text + "\n")


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "inlet", "--example", "ceiling",
                    "--example", "bare", "--example", "seed", "--example", "smtp_sink"], cwd=ROOT, check=True)
    inlet = str(ROOT / "target/release/inlet")
    report, seeded = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        report["bare"] = run_target("bare", [str(ROOT / "target/release/examples/bare"), f"127.0.0.1:{PORT}"], {})
        report["validation"] = run_target("validation", [str(ROOT / "target/release/examples/ceiling"), f"127.0.0.1:{PORT}"], {})

        if "sqlite" in TARGETS:
            db = Path(tmp) / "bench.db"
            seeded["sqlite"] = seed(f"sqlite://{db}")
            count_sqlite = lambda: sqlite3.connect(db).execute("SELECT COUNT(*) FROM leads").fetchone()[0]
            if "sqlite-tmpfs" in TARGETS:
                report["sqlite-tmpfs"] = sqlite_without_disk(inlet, db, tmp)
            report["sqlite"] = run_target("sqlite", [inlet, "serve"], inlet_env(f"sqlite://{db}", tmp), count_sqlite,
                                          growth=True, preloaded=True)

        if "postgres" in TARGETS:
            name = f"inlet_bench_{int(time.time())}"
            psql(PG_ADMIN, f"CREATE DATABASE {name}")
            pg_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
            try:
                seeded["postgres"] = seed(pg_url)
                report["postgres"] = run_target("postgres", [inlet, "serve"], inlet_env(pg_url, tmp),
                                                lambda: int(psql(pg_url, "SELECT COUNT(*) FROM leads")), growth=True,
                                                preloaded=True)
            finally:
                psql(PG_ADMIN, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

        if "extras" in TARGETS:
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

    bare = {c: median(rows, "rps") for c, rows in report["bare"][0].items()}
    validation = {c: median(rows, "rps") for c, rows in report["validation"][0].items()}
    lines = [f"Runs: {RUNS} x {DURATION} s per row, wrk -t2, medians. Machine: {os.cpu_count()} cores. "
             f"Requests as the embed script sends them (form-urlencoded, attribution, an idempotency key each).", ""]
    for engine, secs in seeded.items():
        lines.append(f"{engine}: preloaded {PRELOAD:,} leads (a submission and a sent follow-up each) in {secs:.0f} s.")
    lines += ["",
              "| target | conns | req/s | ÷ bare | ÷ validation | p50 ms | p99 ms | max ms | non-2xx | socket errors | peak RSS MiB | leads stored / 2xx |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for target in ["bare", "validation", "sqlite", "sqlite-tmpfs", "postgres"]:
        if report.get(target) is None:
            continue
        results, rss, stored, _ = report[target]
        ok_total = sum(r["ok"] for rows in results.values() for r in rows)
        # wrk stops with up to one request per connection in flight: the server commits those,
        # wrk never counts their answers. So stored = 2xx + (at most) that many.
        in_flight = sum(c * len(rows) for c, rows in results.items())
        good = stored is not None and ok_total <= stored <= ok_total + in_flight
        check = "-" if stored is None else f"{stored} / {ok_total} (+{stored - ok_total} in flight at wrk's stop, max {in_flight}) {'OK' if good else 'MISMATCH'}"
        for c, rows in results.items():
            rps = median(rows, "rps")
            lines.append(f"| {target} | {c} | {rps:,.0f} | {rps / bare[c]:.0%} | {rps / validation[c]:.0%} | "
                         f"{median(rows, 'p50'):.2f} | {median(rows, 'p99'):.2f} | {median(rows, 'max'):.1f} | "
                         f"{sum(r['non2xx'] for r in rows)} | {sum(r['errors'] for r in rows)} | {rss:.1f} | {check} |")
    for target in ["sqlite", "postgres"]:
        if target not in report:
            continue
        growth = report[target][3]["growth"]
        series = " → ".join(f"{r['rps']:,.0f}" for r in growth)
        lines += ["", f"{target} growth series ({GROWTH_RUNS} × {GROWTH_DURATION} s back to back at 64 connections, "
                      f"on the preloaded database): {series} req/s; last ÷ first {growth[-1]['rps'] / growth[0]['rps']:.0%}; "
                      f"p99 {' / '.join(format(r['p99'], '.1f') for r in growth)} ms; non-2xx {sum(r['non2xx'] for r in growth)}"]
    if "ips" in report:
        results, rss, stored, extra = report["ips"]
        r = results[64][0]
        lines += ["", "100,000 distinct client IPs (X-Forwarded-For through a trusted proxy, per-IP limiter on), SQLite, 64 connections, one run:", "",
                  f"req/s {r['rps']:,.0f}, p99 {r['p99']:.2f} ms, non-2xx {r['non2xx']}, peak RSS {rss:.1f} MiB, "
                  f"IPs tracked by the limiter at the end {extra['tracked_ips']:.0f}, leads stored {stored} / 2xx {r['ok']}"]
    if "worker" in report:
        rows, rss, sent = report["worker"]
        rps = median(rows, "rps")
        lines += ["", "SQLite (fresh database), 64 connections, while the outbox worker sends every follow-up to a local SMTP sink:", "",
                  f"req/s {rps:,.0f} ({rps / bare[64]:.0%} of bare), "
                  f"p99 {median(rows, 'p99'):.2f} ms, non-2xx {sum(r['non2xx'] for r in rows)}, peak RSS {rss:.1f} MiB, "
                  f"follow-ups sent meanwhile {sent:,.0f} of {sum(r['ok'] for r in rows):,} accepted"]
    write_report("submissions", lines)


if __name__ == "__main__":
    main()

"""What the timing probes (oracle_timing.py, signin_timing.py) share: a throwaway database and
a release build of Inlet serving on it."""
import os, random, subprocess, time, urllib.request
from pathlib import Path

INLET = os.environ.get("INLET_BIN", str(Path(__file__).resolve().parent.parent / "target/release/inlet"))


def database(db, tmp, prefix):
    """(URL, drop): a fresh SQLite file in `tmp`, or a PostgreSQL database on 127.0.0.1:5432."""
    if db != "pg":
        return f"sqlite://{tmp}/t.db", lambda: None
    name = f"{prefix}_{random.randint(0, 1 << 30)}"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc"]
    subprocess.run(psql + [f"CREATE DATABASE {name}"], check=True)
    return (f"postgres://postgres@127.0.0.1:5432/{name}",
            lambda: subprocess.run(psql + [f"DROP DATABASE {name} WITH (FORCE)"], check=False))


def serve(env, port):
    """`inlet serve` with `env` on `port`, once it answers; returns (process, base URL)."""
    p = subprocess.Popen([INLET, "serve"], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/healthz")
            break
        except Exception:
            time.sleep(0.1)
    return p, base

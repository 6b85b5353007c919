#!/usr/bin/env python3
"""Fails when a dependency's licence is not on deny.toml's allow-list (or is banned).

Reads `cargo metadata` and snippet/package-lock.json (no network, no extra tool) and evaluates each SPDX expression:
`A OR B` passes when either side is allowed, `A AND B` when both are.
"""
import json
import subprocess
import sys
import tomllib
from pathlib import Path

root = Path(__file__).resolve().parent.parent
policy = tomllib.loads((root / "deny.toml").read_text())
allowed = set(policy["licenses"]["allow"])
banned = {b["name"] for b in policy.get("bans", {}).get("deny", [])}

meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--locked"], cwd=root))


def ok(expr: str) -> bool:
    expr = expr.replace("/", " OR ").strip()
    # Recursive descent: OR binds loosest, then AND; parentheses recurse.
    def parse_or(s):
        alts = split_top(s, " OR ")
        return any(parse_and(a) for a in alts)

    def parse_and(s):
        return all(parse_atom(a) for a in split_top(s, " AND "))

    def parse_atom(s):
        s = s.strip()
        if s.startswith("(") and s.endswith(")"):
            return parse_or(s[1:-1])
        return s in allowed

    def split_top(s, sep):
        out, level, cur, i = [], 0, "", 0
        while i < len(s):
            if s[i] == "(":
                level += 1
            elif s[i] == ")":
                level -= 1
            if level == 0 and s.startswith(sep, i):
                out.append(cur)
                cur, i = "", i + len(sep)
                continue
            cur += s[i]
            i += 1
        out.append(cur)
        return out

    return parse_or(expr)


problems = []
ours = {p["id"] for p in meta["packages"] if p["source"] is None}
for p in meta["packages"]:
    if p["id"] in ours:
        continue
    if p["name"] in banned:
        problems.append(f"{p['name']} {p['version']}: banned")
    lic = p.get("license")
    if not lic:
        problems.append(f"{p['name']} {p['version']}: no SPDX licence field")
    elif not ok(lic):
        problems.append(f"{p['name']} {p['version']}: {lic}")

# The embed script has no runtime dependencies; its build and browser tests use npm packages
# (never shipped), held to the same allow-list.
lock = json.loads((root / "snippet" / "package-lock.json").read_text())
npm = {k: v for k, v in lock["packages"].items() if k}
for path, p in npm.items():
    name = path.rsplit("node_modules/", 1)[-1]
    lic = p.get("license")
    if name in banned:
        problems.append(f"npm {name} {p.get('version')}: banned")
    elif not lic:
        problems.append(f"npm {name} {p.get('version')}: no SPDX licence field")
    elif not ok(lic):
        problems.append(f"npm {name} {p.get('version')}: {lic}")

if problems:
    print("licence check failed:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"licence check: {len(meta['packages']) - len(ours)} crates and {len(npm)} npm packages, all allowed")

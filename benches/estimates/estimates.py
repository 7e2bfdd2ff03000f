#!/usr/bin/env python3
"""How close `vbench plan`'s time estimates come to what the next run takes.

Runs `vbench apply MANIFEST` HISTORY times into a fresh results folder (the history), asks
`vbench plan --json` for its per-variant estimates (now from those past runs), runs apply once
more, and compares each variant's estimate with the time that last run took (its
`timing.json`). The first run's own estimate (built-in defaults) is shown beside it.

Usage: estimates.py MANIFEST [--history 2] [--binary target/release/vbench]
                              [--results DIR] [--set PATH=VALUE ...] [--then-set PATH=VALUE ...]
                              [--json OUT]
--then-set applies to the plan and the measured run only (e.g. other rates than the history's:
their load time is then scaled from the past drain times).
Prints a Markdown table; exit 1 when an apply fails.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time


def apply(binary, manifest, results, sets):
    cmd = [binary, "apply", manifest, "--results", str(results), "--no-report", "--stop-grace-s", "10"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    took = time.monotonic() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        sys.exit(f"apply exited {p.returncode}")
    return took, p.stderr


def newest_run(results):
    runs = sorted(d for exp in results.iterdir() if exp.is_dir() for d in exp.iterdir() if d.is_dir())
    return runs[-1]


def timings(run):
    out = {}
    for v in run.iterdir():
        t = v / "timing.json"
        if t.is_file():
            out[v.name] = json.loads(t.read_text())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest")
    ap.add_argument("--history", type=int, default=2)
    ap.add_argument("--binary", default="target/release/vbench")
    ap.add_argument("--results")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--then-set", action="append", default=[], dest="then_sets")
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args()
    results = pathlib.Path(a.results or tempfile.mkdtemp(prefix="vbench-estimates-"))
    results.mkdir(parents=True, exist_ok=True)

    first = None
    for i in range(a.history):
        took, _ = apply(a.binary, a.manifest, results, a.sets)
        run = newest_run(results)
        print(f"history run {i + 1}: {took:.1f} s ({run.name})", file=sys.stderr)
        if first is None:
            first = timings(run)

    then = a.sets + a.then_sets
    cmd = [a.binary, "plan", a.manifest, "--json", "--results", str(results)]
    for s in then:
        cmd += ["--set", s]
    plan = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    estimates = {v["variant_id"]: v for v in plan["estimate"]["variants"]}

    took, _ = apply(a.binary, a.manifest, results, then)
    run = newest_run(results)
    print(f"measured run: {took:.1f} s ({run.name})", file=sys.stderr)
    actual = timings(run)

    rows = []
    for v in plan["variants"]:
        vid = v["id"]
        e, t = estimates[vid], actual.get(vid)
        if t is None:
            continue
        rows.append({
            "variant": vid,
            "label": v["label"],
            "default_estimate_s": first.get(vid, {}).get("estimated_s"),
            "estimate_s": e["total_s"],
            "basis": e["basis"],
            "actual_s": t["total_s"],
            "actual_ready_s": t["ready_s"],
            "estimate_startup_s": e["startup_s"],
            "error_pct": 100.0 * (e["total_s"] - t["total_s"]) / t["total_s"],
        })
    total_e = plan["estimate"]["total_s"]
    total_a = sum(r["actual_s"] for r in rows)

    sets = " ".join(f"--set {s}" for s in a.sets)
    then_sets = " ".join(f"--set {s}" for s in a.then_sets)
    print(f"\n`{a.manifest}` {sets}: {a.history} past runs, then the measured run"
          f"{' with ' + then_sets if then_sets else ''} ({results}).\n")
    print("| variant | defaults (1st run's estimate) | estimate from past runs | took | error | start-up: estimate / took | rates: measured before / scaled |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        d = r["default_estimate_s"]
        b = r["basis"]
        print(f"| {r['variant']} | {d:.1f} s | {r['estimate_s']:.1f} s | {r['actual_s']:.1f} s | "
              f"{r['error_pct']:+.1f} % | {r['estimate_startup_s']:.1f} / {r['actual_ready_s']:.1f} s | "
              f"{b['rates_measured_before']} / {b['rates_scaled']} |")
    print(f"| **all** | | {total_e:.1f} s | {total_a:.1f} s | {100 * (total_e - total_a) / total_a:+.1f} % | | |")
    worst = max(abs(r["error_pct"]) for r in rows)
    print(f"\nlargest per-variant error: {worst:.1f} %")
    if a.json_out:
        pathlib.Path(a.json_out).write_text(json.dumps({"manifest": a.manifest, "rows": rows,
                                                        "plan_total_s": total_e}, indent=1))


if __name__ == "__main__":
    main()

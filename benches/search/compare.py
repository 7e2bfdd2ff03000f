#!/usr/bin/env python3
"""The SLO-capacity search against a dense sweep's ground truth.

Reads the dense sweep's report (`summary.json` of each run folder given with --dense: the
goodput where the pooled attainment of 3 repeats crosses the target, and its range) and each
search run's `search.json` records (--search run folders), and prints a Markdown table: per
variant and search, the bracket, its midpoint's distance from the dense crossing, whether
the bracket contains it, its width, and the requests used against the dense sweep's.

--dense-requests N counts the search's requests against N (the plain sweep's) instead of all
the requests in the truth's folders (which may hold extra repeats, see combine.py).

Usage: compare.py --dense RUN [RUN ...] [--dense-requests N] --search RUN [RUN ...] [--json OUT]
"""

import argparse
import json
import pathlib
import sys


def dense_truth(runs):
    """variant id -> (goodput x, range lo, range hi, requests)."""
    out = {}
    for run in runs:
        s = json.loads((pathlib.Path(run) / "report" / "summary.json").read_text())
        for v in s["variants"]:
            g = v["goodput"]
            if g["kind"] != "at":
                sys.exit(f"{run}: {v['key']} has no crossing in the dense sweep ({g['kind']})")
            lo, hi = v["goodput_interval"]
            out[v["key"]] = {
                "label": v["label"],
                "x": g["x"],
                "lo": lo.get("x"),
                "hi": hi.get("x"),
                "requests": v["total_requests"],
            }
    return out


def searches(runs):
    """(run, variant id, search record, the report's goodput from the probes) for every
    search.json under the runs."""
    for run in runs:
        report = pathlib.Path(run) / "report" / "summary.json"
        goodput = {}
        if report.is_file():
            for v in json.loads(report.read_text())["variants"]:
                lo, hi = v["goodput_interval"]
                goodput[v["key"]] = (v["goodput"].get("x"), lo.get("x"), hi.get("x"))
        for variant in sorted(pathlib.Path(run).iterdir()):
            records = sorted(variant.glob("search*.json")) if variant.is_dir() else []
            if records:
                yield run, variant.name, json.loads(records[-1].read_text()), goodput.get(variant.name, (None, None, None))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dense", nargs="+", required=True)
    ap.add_argument("--search", nargs="+", required=True)
    ap.add_argument("--dense-requests", type=int)
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args()
    truth = dense_truth(a.dense)
    if a.dense_requests:
        for t in truth.values():
            t["truth_requests"] = t["requests"]
            t["requests"] = a.dense_requests
    rows = []
    for run, vid, rec, (interpolated, range_lo, range_hi) in searches(a.search):
        t = truth.get(vid)
        if t is None:
            sys.exit(f"{run}: {vid} is not in the dense sweep")
        e = rec["ending"]
        if e["kind"] != "bracketed":
            rows.append({"run": run, "variant": vid, "ending": e["kind"], "requests": rec["requests"]})
            continue
        mid = (e["pass"] + e["fail"]) / 2
        rows.append({
            "run": pathlib.Path(run).name,
            "variant": vid,
            "label": t["label"],
            "pass": e["pass"],
            "fail": e["fail"],
            "midpoint": mid,
            "interpolated": interpolated,
            "dense": t["x"],
            "error_pct": 100 * (mid - t["x"]) / t["x"],
            "interpolated_error_pct": None if interpolated is None else 100 * (interpolated - t["x"]) / t["x"],
            "contains": e["pass"] <= t["x"] <= e["fail"],
            "range": [range_lo, range_hi],
            "range_contains": range_lo is not None and range_hi is not None and range_lo <= t["x"] <= range_hi,
            "range_width_pct": None if range_lo is None or range_hi is None else 100 * (range_hi - range_lo) / t["x"],
            "width_pct": 100 * (e["fail"] - e["pass"]) / t["x"],
            "probes": len(rec["probes"]),
            "requests": rec["requests"],
            "dense_requests": t["requests"],
            "share_pct": 100 * rec["requests"] / t["requests"],
        })
    print("| variant | search run | bracket (req/s) | midpoint (error) | interpolated (error) | report's 95 % range (width) | dense crossing | bracket / range contain it | probes | requests (share of dense) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "pass" not in r:
            print(f"| {r['variant']} | {r['run']} | ended {r['ending']} | | | | | | | {r['requests']} |")
            continue
        ip = "-" if r["interpolated"] is None else f"{r['interpolated']:.3f} ({r['interpolated_error_pct']:+.1f} %)"
        lo, hi = r["range"]
        rng = (f"{lo:.3f}-{hi:.3f} ({r['range_width_pct']:.1f} %)" if lo is not None and hi is not None
               else f"{'-' if lo is None else f'{lo:.3f}'} to {'open' if hi is None else f'{hi:.3f}'}")
        print(f"| {r['label']} | {r['run']} | {r['pass']:g}-{r['fail']:g} | {r['midpoint']:.3f} ({r['error_pct']:+.1f} %) | "
              f"{ip} | {rng} | {r['dense']:.3f} | {'yes' if r['contains'] else 'no'} / "
              f"{'yes' if r['range_contains'] else 'no'} | {r['probes']} | {r['requests']} of {r['dense_requests']} "
              f"({r['share_pct']:.0f} %) |")
    for vid, t in truth.items():
        rng = f"{t['lo']:.3f}-{t['hi']:.3f}" if t["lo"] and t["hi"] else "open"
        print(f"\ndense {t['label']}: crossing {t['x']:.3f} req/s (95 % range {rng}), "
              f"{t.get('truth_requests', t['requests'])} requests")
    if a.json_out:
        pathlib.Path(a.json_out).write_text(json.dumps({"truth": truth, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

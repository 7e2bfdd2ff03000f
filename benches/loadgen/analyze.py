#!/usr/bin/env python3
"""Compare client measurements with the fixed server's truth, one row per (client, rate).

usage: analyze.py OUTDIR

OUTDIR holds, per run NAME (e.g. vbench-1000, vllm-1000):
  NAME.json        the client's result (vbench result file, or vllm bench serve --save-detailed)
  NAME.server.jsonl the server's log for that run (GET /log?reset=true)
  NAME.time        /usr/bin/time -v output of the client process
Errors are client minus server, in ms: TTFT from the client's send (the instrument's error),
TPOT per request. Standard library only.
"""

import json
import os
import re
import sys


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    r = p / 100 * (len(xs) - 1)
    lo, hi = int(r), min(int(r) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (r - lo)


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def time_stats(path):
    cpu, rss = float("nan"), float("nan")
    if os.path.exists(path):
        t = open(path).read()
        u = re.search(r"User time \(seconds\): ([\d.]+)", t)
        s = re.search(r"System time \(seconds\): ([\d.]+)", t)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", t)
        if u and s:
            cpu = float(u.group(1)) + float(s.group(1))
        if m:
            rss = int(m.group(1)) / 1024
    return cpu, rss


def server_log(path, prefix):
    out = {}
    for line in open(path):
        e = json.loads(line)
        rid = e.get("id") or ""
        if not rid.startswith(prefix) or e.get("first_ns") is None:
            continue
        try:
            i = int(rid[len(prefix):])
        except ValueError:
            continue
        ttft = (e["first_ns"] - e["recv_ns"]) / 1e6
        tpot = (e["last_ns"] - e["first_ns"]) / 1e6 / (e["tokens"] - 1) if e["tokens"] > 1 else None
        out[i] = (ttft, tpot)
    return out


def analyze(outdir, name):
    res = json.load(open(os.path.join(outdir, name + ".json")))
    client, rate = name.split("-", 1)
    srv = server_log(os.path.join(outdir, name + ".server.jsonl"),
                     "vbench-" if client.startswith("vbench") else "vllm-")
    cpu, rss = time_stats(os.path.join(outdir, name + ".time"))
    e_ttft, e_tpot, lags = [], [], []
    wait99 = float("nan")
    if client.startswith("vbench"):
        v = res["vbench"]
        for q in v["requests"]:
            if not q["ok"] or q["index"] not in srv:
                continue
            s_ttft, s_tpot = srv[q["index"]]
            lag = q["sent_s"] - q["scheduled_s"]
            e_ttft.append((q["ttft_s"] - lag) * 1e3 - s_ttft)
            if q["tpot_s"] is not None and s_tpot is not None:
                e_tpot.append(q["tpot_s"] * 1e3 - s_tpot)
        achieved = v["client"]["achieved_rate"]
        lag50, lag99 = v["client"]["lag_p50_ms"], v["client"]["lag_p99_ms"]
        wait99 = v["client"].get("read_wait_p99_ms") or float("nan")
        n, failed = len(v["requests"]), res["failed"]
    else:
        for i, (t, lat, out) in enumerate(zip(res["ttfts"], res["latencies"], res["output_lens"])):
            if i not in srv or not t:
                continue
            s_ttft, s_tpot = srv[i]
            e_ttft.append(t * 1e3 - s_ttft)
            if out > 1 and s_tpot is not None:
                e_tpot.append((lat - t) / (out - 1) * 1e3 - s_tpot)
        # vllm does not record when it sent: estimate the achieved rate from its duration
        n, failed = res["num_prompts"], res["failed"]
        achieved = n / res["duration"] if res.get("duration") else float("nan")
        lag50 = lag99 = float("nan")
    return {
        "client": client, "rate": rate, "n": n, "failed": failed, "achieved": achieved,
        "ttft_err_mean": mean(e_ttft), "ttft_err_p99": pct([abs(x) for x in e_ttft], 99),
        "tpot_err_mean": mean(e_tpot), "tpot_err_p99": pct([abs(x) for x in e_tpot], 99),
        "lag50": lag50, "lag99": lag99, "wait99": wait99, "cpu": cpu, "rss": rss,
    }


def main():
    outdir = sys.argv[1]
    names = sorted(
        {f[:-5] for f in os.listdir(outdir) if f.endswith(".json")},
        key=lambda s: (float(s.split("-", 1)[1]), s),
    )
    rows = [analyze(outdir, n) for n in names]
    hdr = ("client", "rate", "n", "fail", "achieved/s", "TTFTerr mean", "|TTFTerr| p99",
           "TPOTerr mean", "|TPOTerr| p99", "lag p50", "lag p99", "read wait p99", "CPU s", "RSS MB")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    by = {}
    for r in rows:
        by[(r["client"], r["rate"])] = r
        print("| {client} | {rate} | {n} | {failed} | {achieved:.1f} | {ttft_err_mean:.3f} | "
              "{ttft_err_p99:.3f} | {tpot_err_mean:.4f} | {tpot_err_p99:.4f} | {lag50:.3f} | "
              "{lag99:.3f} | {wait99:.2f} | {cpu:.2f} | {rss:.0f} |".format(**r))
    ratios = []
    for (c, rate), r in by.items():
        if c == "vllm" and ("vbench", rate) in by:
            v = by[("vbench", rate)]
            ratios.append((rate, r["ttft_err_p99"] / v["ttft_err_p99"] if v["ttft_err_p99"] else float("nan"),
                           r["cpu"] / v["cpu"] if v["cpu"] else float("nan"),
                           r["rss"] / v["rss"] if v["rss"] else float("nan")))
    if ratios:
        print()
        print("| rate | vllm/vbench |TTFTerr| p99 | vllm/vbench CPU | vllm/vbench RSS |")
        print("|---|---|---|---|")
        for rate, a, b, c in sorted(ratios, key=lambda x: float(x[0])):
            print(f"| {rate} | {a:.1f}x | {b:.1f}x | {c:.1f}x |")
    print("\nErrors in ms, client minus server truth; TTFT error from the client's send instant.")


if __name__ == "__main__":
    main()

"""The original suite's approach (Python + matplotlib) doing the same work as `vbench report`
on the same run folder: read every result file, score attainment (both / TTFT / TPOT) per rate
and per SLO scale, percentiles, and draw the same figures (per variant: attainment, latency
percentiles, client health; comparisons per SLO type), each saved as PDF, SVG and PNG.

usage: matplotlib_equiv.py RUN_DIR OUT_DIR
"""
import time

T0 = time.perf_counter()
import glob, json, os, sys  # noqa: E402
import numpy as np  # noqa: E402
import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

T1 = time.perf_counter()
run, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
TTFT, TPOT, TARGET = 0.125, 0.2, 90.0
SCALES = [0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0]
COLORS = {"simple": "red", "nixl": "blue", "lmcache": "green"}

variants = {}
for path in sorted(glob.glob(os.path.join(run, "*", "vllm-*qps.json"))):
    with open(path) as f:
        d = json.load(f)
    dep = d["vbench"]["deployment"]
    v = variants.setdefault(dep["variant_id"], {"dep": dep, "points": []})
    ttfts = np.array(d["ttfts"])
    tpots = np.array(d["tpots"])
    outl = np.array(d["output_lens"])
    failed = np.array([bool(e) for e in d["errors"]])
    itls = np.concatenate([np.array(x) for x, bad in zip(d["itls"], failed) if not bad and x] or [np.zeros(0)])
    v["points"].append(dict(rate=float(d["request_rate"]), ttfts=ttfts, tpots=tpots, outl=outl,
                            failed=failed, itls=itls, lat=np.array(d["latencies"]),
                            client=d["vbench"]["client"]))


def att(p, s):
    ok = ~p["failed"]
    t_ok = ok & (p["ttfts"] <= TTFT * s)
    p_ok = ok & ((p["tpots"] <= TPOT * s) | (p["outl"] <= 1))
    n = len(ok)
    return [100.0 * np.sum(t_ok & p_ok) / n, 100.0 * np.sum(t_ok) / n, 100.0 * np.sum(p_ok) / n]


def crossing(xs, ys):
    above = [i for i, y in enumerate(ys) if y >= TARGET]
    if not above or above[-1] == len(ys) - 1:
        return None
    i = above[-1]
    x0, y0, x1, y1 = xs[i], ys[i], xs[i + 1], ys[i + 1]
    return x0 + (TARGET - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else x0


def save(fig, stem):
    for ext in ("pdf", "svg", "png"):
        fig.savefig(os.path.join(out, f"{stem}.{ext}"), dpi=100)
    plt.close(fig)


summary = {}
for vid, v in variants.items():
    pts = sorted(v["points"], key=lambda p: p["rate"])
    rates = [p["rate"] for p in pts]
    curves = np.array([att(p, 1.0) for p in pts])
    good = [p for p in pts if att(p, 1.0)[0] >= TARGET]
    sp = good[-1] if good else pts[0]
    scurve = np.array([att(sp, s) for s in SCALES])
    v.update(rates=rates, curves=curves, scurve=scurve)
    pct = {}
    for p in pts:
        ok = ~p["failed"]
        pct[p["rate"]] = {k: list(np.percentile(a, [50, 90, 99]) * 1e3) if len(a) else None for k, a in
                          (("ttft", p["ttfts"][ok]), ("tpot", p["tpots"][ok & (p["outl"] > 1)]),
                           ("itl", p["itls"]), ("e2e", p["lat"][ok]))}
    summary[vid] = dict(goodput=crossing(rates, list(curves[:, 0])), pct=pct)
    color = COLORS.get(v["dep"]["mode"], "purple")
    title = f"{v['dep']['label']} | model Qwen/Qwen3-0.6B | sharegpt | TTFT<=125ms TPOT<=200ms | SIMULATED"
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5.4))
    for k, (name, ls) in enumerate((("both", "-"), ("TTFT only", ":"), ("TPOT only", "--"))):
        a.plot(rates, curves[:, k], ls, color=color, marker="o", label=name)
        b.plot(SCALES, scurve[:, k], ls, color=color, marker="o", label=name)
    for ax in (a, b):
        ax.axhline(TARGET, color="grey")
        ax.set_ylim(0, 110)
        ax.legend()
    g = summary[vid]["goodput"]
    if g:
        a.axvline(g, ls="--", color=color)
        a.annotate(f"{g:.2f}", (g, TARGET))
    b.invert_xaxis()
    fig.suptitle(title)
    save(fig, f"{vid}_benchmark_plots")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
    for ax, key, slo in ((axes[0], "ttft", TTFT), (axes[1], "tpot", TPOT)):
        for i, ls in enumerate(("-", "--", ":")):
            ax.plot(rates, [pct[r][key][i] if pct[r][key] else np.nan for r in rates], ls, color=color, marker="o")
        ax.axhline(slo * 1e3, color="grey")
    fig.suptitle(title)
    save(fig, f"{vid}_latency_percentiles")
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5.4))
    a.plot(rates, [p["client"]["achieved_rate"] for p in pts], "-o", color=color)
    a.plot(rates, rates, "--", color="grey")
    for key, ls in (("lag_p50_ms", "-"), ("lag_p99_ms", "--"), ("lag_max_ms", ":")):
        b.plot(rates, [p["client"][key] for p in pts], ls, color=color, marker="o")
    fig.suptitle(title)
    save(fig, f"{vid}_client_health")

for k, kind in enumerate(("both", "ttft", "tpot")):
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5.4))
    seen = {}
    for vid, v in variants.items():
        mode = v["dep"]["mode"]
        j = seen[mode] = seen.get(mode, -1) + 1
        ls = ["-", "--", ":", "-."][j % 4]
        color = COLORS.get(mode, "purple")
        a.plot(v["rates"], v["curves"][:, k], ls, color=color, marker="o", label=v["dep"]["label"])
        b.plot(SCALES, v["scurve"][:, k], ls, color=color, marker="o", label=v["dep"]["label"])
        c = crossing(v["rates"], list(v["curves"][:, k]))
        if c:
            a.axvline(c, ls="--", color=color)
            a.annotate(f"{c:.2f}", (c, TARGET))
    for ax in (a, b):
        ax.axhline(TARGET, color="grey")
        ax.set_ylim(0, 110)
        ax.legend(fontsize=8)
    b.invert_xaxis()
    fig.suptitle(f"comparison {kind} | Qwen/Qwen3-0.6B | SIMULATED")
    save(fig, f"all_comparison_{kind}")

with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump({k: {"goodput": v["goodput"]} for k, v in summary.items()}, f)
T2 = time.perf_counter()
print(f"imports_s {T1 - T0:.3f}")
print(f"elapsed_after_imports_s {T2 - T1:.3f}")
print(f"figures {len(os.listdir(out))} files")

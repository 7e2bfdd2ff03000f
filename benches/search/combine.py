#!/usr/bin/env python3
"""Pool a dense sweep with extra repeats of some of its rates into one run folder.

The ground truth's crossing is only as sure as the attainment at the rates around it. This
copies a dense sweep's run folder to OUT and adds the result files of EXTRA run folders (the
same manifest with other rates, repeats and seed) as further repeats of their rates
(`vllm-<rate>qps-repeat<k>.json`, k counted on from the dense sweep's repeats), so that
`vbench report OUT` pools them with the sweep's. Each file keeps its own bytes; only the name
changes. The variant must be the same (same folder name) in every run.

Usage: combine.py OUT DENSE_RUN EXTRA_RUN [EXTRA_RUN ...]
"""

import pathlib
import re
import shutil
import sys

RESULT = re.compile(r"vllm-([0-9.]+)qps(?:-repeat(\d+))?\.json$")


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, dense, extras = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
    if out.exists():
        sys.exit(f"{out} exists: choose a new folder")
    shutil.copytree(dense, out, symlinks=True, ignore=shutil.ignore_patterns("report*"))
    for variant in (d for d in out.iterdir() if d.is_dir() and any(d.glob("vllm-*qps*.json"))):
        highest = {}
        for f in variant.glob("vllm-*qps*.json"):
            m = RESULT.match(f.name)
            if m:
                highest[m.group(1)] = max(highest.get(m.group(1), 0), int(m.group(2) or 1))
        added = 0
        for extra in extras:
            src = pathlib.Path(extra) / variant.name
            for f in sorted(src.glob("vllm-*qps*.json")):
                m = RESULT.match(f.name)
                if not m:
                    continue
                k = highest.get(m.group(1), 0) + 1
                highest[m.group(1)] = k
                target = variant / f"vllm-{m.group(1)}qps-repeat{k}.json"
                if target.exists():
                    sys.exit(f"{target} exists")
                shutil.copyfile(f, target)
                added += 1
        print(f"{variant.name}: {added} extra result files")


if __name__ == "__main__":
    main()

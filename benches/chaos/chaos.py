#!/usr/bin/env python3
"""Chaos campaign for `vbench apply`: interrupt, kill and starve randomized runs on the `sim`
backend, then check that nothing is left running, that no result is altered or lost, and that
`apply --resume` completes the run.

    python3 benches/chaos/chaos.py --trials 24 --seed 1 [--binary PATH] [--out DIR]
                                   [--kinds sigint,kill-proxy,...] [--tmpfs]

Python 3.11, standard library only. See benches/chaos/README.md.
"""

from __future__ import annotations

import argparse
import collections
import glob
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MANIFEST = os.path.join(HERE, "chaos.toml")

KINDS = [
    "sigint",
    "sigterm",
    "sigkill",
    "sigkill-reaper",
    "kill-instance",
    "kill-proxy",
    "double-sigint",
    "full-disk",
    "concurrent-resume",
]
SIGNAL_OF = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}

APPLY_TIMEOUT_S = 120.0  # an apply (faulted or resume) that runs longer than this is hung
TMPFS_SIZE = "64m"
RESULT_RE = re.compile(r"^vllm-.*qps\.json$")
LOCKED_MSG = "another vbench is running"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rc_text(rc) -> str:
    """An exit status as the table shows it: 130, SIGKILL, hung."""
    if rc is None:
        return "hung"
    if rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return f"signal{-rc}"
    return str(rc)


def tail(path: str, chars: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - chars))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def last_line(path: str) -> str:
    lines = [l for l in tail(path, 600).splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


# ----------------------------------------------------------------------------- processes


class Procs:
    """Processes that run the private copy of the binary, found through /proc/PID/exe."""

    def __init__(self, exe: str):
        self.exe = exe

    def scan(self, exclude=()) -> list[dict]:
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in exclude:
                continue
            try:
                target = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue  # gone, a zombie, or a kernel thread
            if target not in (self.exe, self.exe + " (deleted)"):
                continue
            info = {"pid": pid, "cmdline": "", "ppid": None, "pgid": None, "state": ""}
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
                info["argv"] = [a.decode("utf-8", "replace") for a in args if a]
                info["cmdline"] = " ".join(info["argv"])
                with open(f"/proc/{pid}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                info["state"], info["ppid"], info["pgid"] = rest[0], int(rest[1]), int(rest[2])
            except (OSError, IndexError, ValueError):
                continue
            if info["state"] in ("Z", "X"):
                continue
            found.append(info)
        return found

    def components(self, sub: str) -> list[dict]:
        """Running components of one kind (`sim-serve`, `proxy`) that lead their own group."""
        return [
            p
            for p in self.scan()
            if len(p.get("argv", [])) > 1 and p["argv"][1] == sub and p["pgid"] == p["pid"]
        ]

    def leftovers(self, wait_s: float, exclude=()) -> list[dict]:
        """Poll up to `wait_s` for every process of the binary to go; SIGKILL and return the
        survivors."""
        deadline = time.monotonic() + wait_s
        while True:
            left = self.scan(exclude)
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        for p in left:
            try:
                os.kill(p["pid"], signal.SIGKILL)
            except OSError:
                pass
        if left:  # let them go before the next step starts
            end = time.monotonic() + 5
            while self.scan(exclude) and time.monotonic() < end:
                time.sleep(0.05)
        return [{k: p[k] for k in ("pid", "ppid", "pgid", "state", "cmdline")} for p in left]


# ----------------------------------------------------------------------------- run folders


def find_run_dirs(results: str) -> list[str]:
    return sorted(
        d
        for d in glob.glob(os.path.join(results, "*", "*"))
        if os.path.isdir(d) and re.fullmatch(r"\d{8}_\d{6}", os.path.basename(d))
    )


def result_files(run_dir: str) -> list[str]:
    """The run's result files, `<variant>/vllm-*qps.json`, as relative paths."""
    return sorted(os.path.relpath(f, run_dir)
                  for f in glob.glob(os.path.join(run_dir, "*", "vllm-*qps.json"))
                  if RESULT_RE.match(os.path.basename(f)))


def aborted_files(run_dir: str) -> list[str]:
    """Rates during which a component died, kept aside by vbench (`<variant>/aborted/`): not
    results, but as immutable as them."""
    return sorted(os.path.relpath(f, run_dir)
                  for f in glob.glob(os.path.join(run_dir, "*", "aborted", "*.json")))


def count_results(results: str) -> int:
    return len(glob.glob(os.path.join(results, "*", "*", "*", "vllm-*qps.json")))


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def snapshot(run_dir: str) -> dict[str, str]:
    snap = {}
    for rel in result_files(run_dir) + aborted_files(run_dir):
        try:
            snap[rel] = sha256(os.path.join(run_dir, rel))
        except OSError:
            pass
    return snap


def read_plan(run_dir: str):
    try:
        with open(os.path.join(run_dir, "plan.json")) as f:
            return json.load(f).get("cells")
    except (OSError, ValueError, AttributeError):
        return None


# ----------------------------------------------------------------------------- the campaign


class Campaign:
    def __init__(self, args, exe: str, out: str):
        self.args = args
        self.exe = exe
        self.out = out
        self.procs = Procs(exe)
        self.grace = args.stop_grace_s
        self.children: list[subprocess.Popen] = []
        self.mounts: list[str] = []

    # ---- apply processes

    def start_apply(self, tdir: str, results: str, tag: str, resume: str | None = None):
        cmd = [self.exe, "apply", self.args.manifest, "--results", results,
               "--stop-grace-s", str(self.grace)]
        if resume:
            cmd += ["--resume", resume]
        out = open(os.path.join(tdir, f"{tag}.stdout"), "wb")
        err_path = os.path.join(tdir, f"{tag}.stderr")
        err = open(err_path, "wb")
        p = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            cwd=tdir,
        )
        out.close()
        err.close()
        p.tag, p.err_path, p.t_start, p.t_end = tag, err_path, time.monotonic(), None
        self.children.append(p)
        return p

    def wait(self, procs, timeout: float = APPLY_TIMEOUT_S) -> list[str]:
        """Wait for the applies to exit, noting when each did; SIGKILL the hung ones."""
        hung = []
        deadline = time.monotonic() + timeout
        pending = [p for p in procs if p.t_end is None]
        while pending:
            for p in list(pending):
                if p.poll() is not None:
                    p.t_end = time.monotonic()
                    pending.remove(p)
            if not pending:
                break
            if time.monotonic() >= deadline:
                for p in pending:
                    hung.append(p.tag)
                    p.kill()  # the apply only: its reaper must clean up the rest
                    p.wait()
                    p.t_end = time.monotonic()
                    p.hung = True
                break
            time.sleep(0.02)
        for p in procs:
            if p in self.children:
                self.children.remove(p)
        return hung

    def record(self, p, t0: float) -> dict:
        rc = None if getattr(p, "hung", False) else p.returncode
        r = {
            "tag": p.tag,
            "exit": rc,
            "exit_text": rc_text(rc),
            "start_s": round(p.t_start - t0, 3),
            "end_s": round(p.t_end - t0, 3) if p.t_end else None,
        }
        if rc != 0:
            r["stderr_tail"] = tail(p.err_path)
        return r

    # ---- faults

    def moment(self, p, t0, action, results, **extra) -> dict:
        m = {
            "t_s": round(time.monotonic() - p.t_start, 3),
            "action": action,
            "phase": last_line(p.err_path),
            "cells_done": count_results(results),
        }
        m.update(extra)
        return m

    def sleep_while_alive(self, p, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if p.poll() is not None:
                return False
            time.sleep(min(0.01, max(0.0, end - time.monotonic())))
        return p.poll() is None

    def signal_apply(self, p, sig, t0, results) -> dict | None:
        if p.poll() is not None:
            return None
        m = self.moment(p, t0, sig.name, results)
        try:
            os.kill(p.pid, sig)  # the apply process only, not its group
        except ProcessLookupError:
            return None
        return m

    def kill_component(self, p, sub: str, t0, results, rng) -> dict | None:
        """SIGKILL the group of a random `sub` component, at a random moment of its life."""
        if not self.sleep_while_alive(p, rng.uniform(max(0.5, self.args.min_delay),
                                                      max(0.5, self.args.max_delay))):
            return None
        cands = self.procs.components(sub)
        if not cands:
            # None now (between variants, or no proxy in this variant): take the next one
            # that appears, a random moment into its life.
            while p.poll() is None and not cands:
                time.sleep(0.02)
                cands = self.procs.components(sub)
            if not cands or not self.sleep_while_alive(p, rng.uniform(0.0, 2.0)):
                return None
            cands = self.procs.components(sub)
            if not cands:
                return None
        victim = rng.choice(cands)
        # The variant being served: the last "[k/n] <variant> (...)" header apply printed.
        heads = re.findall(r"^\[\d+/\d+\] (\S+)", tail(p.err_path, 1 << 20), re.M)
        variant = heads[-1] if heads else None
        done = (len(glob.glob(os.path.join(results, "*", "*", variant, "vllm-*qps.json")))
                if variant else None)
        m = self.moment(p, t0, f"SIGKILL group of {sub}", results, pid=victim["pid"],
                        cmdline=victim["cmdline"], variant=variant, variant_cells_done=done)
        try:
            os.killpg(victim["pid"], signal.SIGKILL)
        except ProcessLookupError:
            m["note"] = "the group was already gone"
        return m

    def fill_disk(self, results: str) -> dict:
        path = os.path.join(results, "filler.bin")
        written = 0
        t = time.monotonic()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for size in (1 << 20, 1 << 12, 1):
                buf = b"\0" * size
                while True:
                    try:
                        n = os.write(fd, buf)
                    except OSError:  # ENOSPC
                        break
                    if n <= 0:
                        break
                    written += n
        finally:
            os.close(fd)
        st = os.statvfs(results)
        return {"filler_bytes": written, "free_after": st.f_bavail * st.f_frsize,
                "fill_s": round(time.monotonic() - t, 3)}

    # ---- one trial

    def trial(self, index: int, kind: str, rng: random.Random) -> dict:
        tdir = os.path.join(self.out, "trials", f"{index:03d}-{kind}")
        os.makedirs(tdir)
        results = os.path.join(tdir, "results")
        os.makedirs(results)
        rec = {"index": index, "kind": kind, "delay_s": None, "moments": [], "applies": [],
               "leftovers": [], "leftovers_after_resume": [], "snapshot": {},
               "files_altered": [], "files_lost": [], "cells_missing": [], "cells_invalid": [],
               "cells_duplicated": [], "extra_results": [], "cells_with_failed_requests": [], "resume_exit": None,
               "warnings": [], "notes": [], "reasons": []}
        reasons, t0 = rec["reasons"], time.monotonic()
        mounted = False
        try:
            if kind == "full-disk":
                subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}",
                                "chaos-results", results], check=True, capture_output=True)
                mounted = True
                self.mounts.append(results)
            self.fault_and_resume(kind, rng, tdir, results, rec, t0)
        except Exception as e:  # a bug of this script: the trial fails, the campaign goes on
            reasons.append(f"chaos script error: {type(e).__name__}: {e}")
        finally:
            for p in list(self.children):
                if p.poll() is None:
                    p.kill()
                p.wait()
                self.children.remove(p)
            extra = self.procs.leftovers(0)
            if extra:
                rec["leftovers_after_resume"] += extra
                reasons.append(f"{len(extra)} processes still running at the trial's end")
            if mounted:
                if reasons and rec.get("run_dir"):
                    keep = os.path.join(tdir, "run-copy")
                    shutil.copytree(rec["run_dir"], keep, ignore=shutil.ignore_patterns(
                        "filler.bin", "report"), dirs_exist_ok=True)
                    rec["notes"].append(f"run folder copied to {keep} before unmounting")
                r = subprocess.run(["umount", results], capture_output=True)
                if r.returncode != 0:
                    subprocess.run(["umount", "-l", results], capture_output=True)
                self.mounts.remove(results)
        rec["duration_s"] = round(time.monotonic() - t0, 2)
        rec["passed"] = not reasons
        if rec["passed"] and not self.args.keep:
            shutil.rmtree(results, ignore_errors=True)
        return rec

    def fault_and_resume(self, kind, rng, tdir, results, rec, t0) -> None:
        reasons, moments = rec["reasons"], rec["moments"]
        delay = round(rng.uniform(self.args.min_delay, self.args.max_delay), 3)
        rec["delay_s"] = delay
        p = self.start_apply(tdir, results, "apply")
        filled = None

        # -- the fault
        if kind in SIGNAL_OF:
            if self.sleep_while_alive(p, delay):
                m = self.signal_apply(p, SIGNAL_OF[kind], t0, results)
                if m:
                    moments.append(m)
        elif kind == "sigkill-reaper":
            # apply and its watchdog die together: the components are stranded on purpose,
            # and the resume must find them by the run's mark and stop them.
            if self.sleep_while_alive(p, delay):
                reapers = [q["pid"] for q in self.procs.scan()
                           if q["ppid"] == p.pid and q.get("argv", [])[1:2] == ["reaper"]]
                m = self.moment(p, t0, "SIGKILL apply and its reaper", results, reapers=reapers)
                for pid in reapers:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    os.kill(p.pid, signal.SIGKILL)
                    moments.append(m)
                except ProcessLookupError:
                    pass
        elif kind in ("double-sigint", "concurrent-resume"):
            if self.sleep_while_alive(p, delay):
                m = self.signal_apply(p, signal.SIGINT, t0, results)
                if m:
                    moments.append(m)
                    if kind == "double-sigint" and self.sleep_while_alive(p, rng.uniform(0.05, 1.5)):
                        m2 = self.signal_apply(p, signal.SIGINT, t0, results)
                        if m2:
                            moments.append(m2)
        elif kind in ("kill-instance", "kill-proxy"):
            rec["delay_s"] = None  # chosen inside, see the moment's t_s
            m = self.kill_component(p, "sim-serve" if kind == "kill-instance" else "proxy",
                                    t0, results, rng)
            if m:
                moments.append(m)
        elif kind == "full-disk":
            if self.sleep_while_alive(p, delay):
                m = self.moment(p, t0, "fill the results tmpfs", results)
                m.update(self.fill_disk(results))
                moments.append(m)
                filled = os.path.join(results, "filler.bin")
        delivered = bool(moments)
        if not delivered:
            rec["notes"].append("the fault came too late: apply had already exited")

        # -- apply must exit
        hung = self.wait([p])
        ap = self.record(p, t0)
        rec["applies"].append(ap)
        if hung:
            reasons.append(f"apply hung (still running {APPLY_TIMEOUT_S:.0f} s after the fault)")
        rc = ap["exit"]
        self.check_fault_exit(kind, rc, delivered, moments, p, results, rec)

        # -- leftovers, then the snapshot
        if kind == "sigkill-reaper":
            time.sleep(self.grace + 1)  # what is still there now stays: nothing else stops it
            rec["stranded"] = [{k: q[k] for k in ("pid", "pgid", "cmdline")}
                               for q in self.procs.scan()]
            left = []
        else:
            left = self.procs.leftovers(self.grace + 10)
        if left:
            rec["leftovers"] = left
            reasons.append(f"{len(left)} leftover processes after the faulted apply exited")
        runs = find_run_dirs(results)
        if len(runs) > 1:
            reasons.append(f"{len(runs)} run folders after one apply: {runs}")
        run_dir = runs[0] if runs else None
        rec["run_dir"] = run_dir
        snap = snapshot(run_dir) if run_dir else {}
        rec["snapshot"] = snap
        if filled:
            os.unlink(filled)

        # -- resume (or a fresh apply when there is nothing to resume)
        if run_dir is None:
            rec["notes"].append("no run folder: apply was stopped before creating it; "
                                "a fresh apply must complete instead")
            q = self.start_apply(tdir, results, "fresh")
            if self.wait([q]):
                reasons.append("fresh apply hung")
            r = self.record(q, t0)
            rec["applies"].append(r)
            rec["resume_exit"] = r["exit"]
            if r["exit"] != 0:
                reasons.append(f"fresh apply exited {r['exit_text']}, expected 0")
            runs = find_run_dirs(results)
            run_dir = runs[-1] if runs else None
            rec["run_dir"] = run_dir
        elif kind == "concurrent-resume":
            self.concurrent_resumes(rng, tdir, results, run_dir, rec, t0)
        else:
            q = self.start_apply(tdir, results, "resume", resume=run_dir)
            if self.wait([q]):
                reasons.append("resume hung")
            r = self.record(q, t0)
            rec["applies"].append(r)
            rec["resume_exit"] = r["exit"]
            if r["exit"] != 0:
                reasons.append(f"resume exited {r['exit_text']}, expected 0")
            stranded = rec.get("stranded") or []
            if stranded and f"an earlier apply of this run left {len(stranded)} process(es)" \
                    not in tail(q.err_path, 1 << 20):
                reasons.append(f"{len(stranded)} stranded processes, but the resume did not "
                               "name them")

        # -- the checks after the resume
        left = self.procs.leftovers(self.grace + 10)
        if left:
            rec["leftovers_after_resume"] = left
            reasons.append(f"{len(left)} leftover processes after the resume")
        if run_dir is None:
            reasons.append("no run folder even after a complete apply")
        else:
            self.check_run(run_dir, snap, rec)

    def check_fault_exit(self, kind, rc, delivered, moments, p, results, rec):
        reasons = rec["reasons"]
        if rc is None:
            return  # hung: already a reason
        if not delivered:
            if rc != 0:
                reasons.append(f"apply exited {rc_text(rc)} with no fault delivered, expected 0")
            return
        total = None  # cells in the plan, known once plan.json exists
        runs = find_run_dirs(results)
        if runs:
            cells = read_plan(runs[0])
            total = len(cells) if cells else None
        pending = total is not None and moments[0]["cells_done"] < total
        if kind in ("sigkill", "sigkill-reaper"):
            ok = rc == -signal.SIGKILL
            want = "SIGKILL"
        elif kind in ("sigint", "sigterm", "double-sigint", "concurrent-resume"):
            ok = rc == 130 or (rc == 0 and not pending)
            want = "130 (or 0 when every cell was done before the signal)"
            if not runs and rc in (-signal.SIGINT, -signal.SIGTERM):
                ok = True  # killed by the signal before vbench listened: nothing had started
                rec["notes"].append("the signal came before vbench handled signals "
                                    "(killed by it; no run folder yet)")
        elif kind in ("kill-instance", "kill-proxy"):
            ok = rc in (0, 1)
            want = "1 (or 0 when the kill went unnoticed)"
            if rc == 0:
                m = moments[0]
                planned = sum(c["variant_id"] == m.get("variant")
                              for c in (read_plan(runs[0]) or [] if runs else []))
                if m.get("variant_cells_done") is not None and m["variant_cells_done"] < planned:
                    ok = False
                    want = (f"1: {m['variant']} lost a component with "
                            f"{m['variant_cells_done']}/{planned} of its cells done, "
                            "yet the variant did not fail")
                    rec["applies"][0]["stderr_tail"] = tail(p.err_path)
                else:
                    rec["notes"].append("the kill came after the variant's last cell "
                                        "(during teardown): the variant did not fail")
            else:
                self.check_others_complete(runs[0] if runs else None, rec)
        elif kind == "full-disk":
            ok = rc != 0 or not pending
            want = "non-zero (or 0 when every cell was done before the disk filled)"
            if rc not in (0, None):
                err = tail(p.err_path, 4000).lower()
                if not any(w in err for w in ("no space", "space left", "mib free", "disk", "enospc")):
                    reasons.append("apply stopped on the full disk without a clear error "
                                   "(no 'No space left' / free-space message in its stderr)")
        else:
            ok, want = True, "any"
        if not ok:
            reasons.append(f"faulted apply exited {rc_text(rc)}, expected {want}"
                           + (f" ({moments[0]['cells_done']}/{total} cells done at the fault)"
                              if total else ""))

    def check_others_complete(self, run_dir, rec):
        """After a component kill made apply exit 1: the variants that did not fail have all
        their cells."""
        if not run_dir:
            return
        cells = read_plan(run_dir) or []
        failed = {v for v in {c["variant_id"] for c in cells}
                  if os.path.exists(os.path.join(run_dir, v, "FAILED.txt"))}
        rec["variants_failed"] = sorted(failed)
        if not failed:
            rec["reasons"].append("apply exited 1 after a component kill but no variant has "
                                  "FAILED.txt")
        for c in cells:
            if c["variant_id"] not in failed and not os.path.exists(
                    os.path.join(run_dir, c["variant_id"], c["result_file"])):
                rec["reasons"].append(
                    f"variant {c['variant_id']} did not fail but lacks {c['result_file']} "
                    "after the first apply")

    def concurrent_resumes(self, rng, tdir, results, run_dir, rec, t0):
        reasons = rec["reasons"]
        offset = round(rng.uniform(0.0, 1.0), 3)
        rec["resume_offset_s"] = offset
        a = self.start_apply(tdir, results, "resume-a", resume=run_dir)
        time.sleep(offset)
        b = self.start_apply(tdir, results, "resume-b", resume=run_dir)
        hung = self.wait([a, b])
        if hung:
            reasons.append(f"resume hung: {hung}")
        ra, rb = self.record(a, t0), self.record(b, t0)
        for r, p in ((ra, a), (rb, b)):
            r["stderr_tail"] = tail(p.err_path)  # both outputs recorded
            r["stdout_tail"] = tail(os.path.join(tdir, f"{p.tag}.stdout"), 600)
            # refused because the other holds the run folder (whatever the exit code says)
            r["locked"] = LOCKED_MSG in tail(p.err_path, 4000)
            r["ran_cells"] = "req/s:" in tail(p.err_path, 100000)
        rec["applies"] += [ra, rb]
        codes = (ra["exit"], rb["exit"])
        refused = [r for r in (ra, rb) if r["locked"]]
        proceeded = [r for r in (ra, rb) if not r["locked"]]
        if len(refused) == 1 and len(proceeded) == 1:
            # exactly one proceeded: it must complete, the other must say "locked" with exit 2
            rec["resume_exit"] = proceeded[0]["exit"]
            if proceeded[0]["exit"] != 0:
                reasons.append(f"the resume that proceeded ({proceeded[0]['tag']}) exited "
                               f"{proceeded[0]['exit_text']}, expected 0")
            if refused[0]["exit"] != 2:
                reasons.append(f"the resume refused for the lock ({refused[0]['tag']}: "
                               f"'{LOCKED_MSG} ...') exited {refused[0]['exit_text']}, "
                               "expected 2 (locked)")
        elif not refused and codes == (0, 0):
            rec["resume_exit"] = 0
            apart = (ra["end_s"] is not None and ra["end_s"] <= rb["start_s"]) or (
                rb["end_s"] is not None and rb["end_s"] <= ra["start_s"])
            rec["resumes_overlapped"] = not apart
            if ra["ran_cells"] and rb["ran_cells"]:
                reasons.append("both concurrent resumes proceeded and ran cells")
            else:
                rec["notes"].append("both resumes exited 0: one had nothing left to do")
        else:
            rec["resume_exit"] = next((c for c in codes if c not in (1, 2)), codes[0])
            reasons.append(f"concurrent resumes exited {rc_text(codes[0])} and "
                           f"{rc_text(codes[1])} ({len(refused)} refused for the lock); "
                           "expected one 0 and one 2 (locked)")

    def check_run(self, run_dir, snap, rec):
        reasons = rec["reasons"]
        for rel, digest in sorted(snap.items()):
            path = os.path.join(run_dir, rel)
            if not os.path.exists(path):
                rec["files_lost"].append(rel)
            elif sha256(path) != digest:
                rec["files_altered"].append(rel)
        if rec["files_lost"]:
            reasons.append(f"result files lost after resume: {rec['files_lost']}")
        if rec["files_altered"]:
            reasons.append(f"result files altered by resume: {rec['files_altered']}")
        cells = read_plan(run_dir)
        if cells is None:
            reasons.append("plan.json missing or unreadable: "
                           + ", ".join(sorted(os.listdir(run_dir))) + " in the run folder")
            return
        per_variant = collections.Counter(c["variant_id"] for c in cells)
        planned = {os.path.join(c["variant_id"], c["result_file"]) for c in cells}
        for rel in sorted(planned):
            path = os.path.join(run_dir, rel)
            if not os.path.exists(path):
                rec["cells_missing"].append(rel)
                continue
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                rec["cells_invalid"].append(f"{rel}: {e}")
                continue
            failed = data.get("failed") if isinstance(data, dict) else None
            if isinstance(failed, int) and failed > 0:
                rec["cells_with_failed_requests"].append(f"{rel}: {failed} failed")
        found = result_files(run_dir)
        aside = aborted_files(run_dir)
        if aside:
            rec["notes"].append(f"rates kept aside because a component died during them: {aside}")
        by_variant = collections.Counter(rel.split(os.sep)[0] for rel in found)
        for v, n in sorted(per_variant.items()):
            if by_variant.get(v, 0) > n:
                rec["cells_duplicated"].append(f"{v}: {by_variant[v]} result files, {n} planned")
        rec["extra_results"] = [rel for rel in found if rel not in planned]
        if rec["cells_with_failed_requests"]:
            rec["warnings"].append(
                "result files kept as measurements although requests failed (the simulator "
                "fails none unless a component died; warning, not a failure): "
                + ", ".join(rec["cells_with_failed_requests"]))
        if rec["cells_missing"]:
            reasons.append(f"planned cells missing after resume: {rec['cells_missing']}")
        if rec["cells_invalid"]:
            reasons.append(f"result files that are not JSON: {rec['cells_invalid']}")
        if rec["cells_duplicated"] or rec["extra_results"]:
            reasons.append(f"result files beyond the plan: {rec['cells_duplicated']} "
                           f"{rec['extra_results']}")
        failed = sorted(glob.glob(os.path.join(run_dir, "*", "FAILED.txt")))
        if failed:
            reasons.append("FAILED.txt remains after resume: "
                           + ", ".join(os.path.relpath(f, run_dir) for f in failed))
        # An unfinished write's temp file (vbench names them .vbench-partial-*; `vbench clean`
        # removes them) is never read as a result.
        tmps = sorted(os.path.relpath(f, run_dir)
                      for f in glob.glob(os.path.join(run_dir, "**", ".vbench-partial-*"),
                                         recursive=True))
        if tmps:
            rec["warnings"].append(f"unfinished writes' temp files left (warning, not a "
                                   f"failure): {tmps}")
        stale = sorted(d for d in os.listdir(run_dir) if d.startswith(".report-new"))
        if stale:
            rec["warnings"].append(f"stale report folders left in the run folder (warning, "
                                   f"not a failure): {stale}")
        rec["files_after_resume"] = len(found)

    # ---- cleanup

    def cleanup(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.children.clear()
        left = self.procs.leftovers(self.grace + 3)
        for m in list(self.mounts):
            r = subprocess.run(["umount", m], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)
            self.mounts.remove(m)
        return left


# ----------------------------------------------------------------------------- report


def table(recs: list[dict], kinds: list[str]) -> str:
    def codes(counter):
        return ", ".join(f"{k}×{n}" for k, n in counter.most_common()) or "-"

    rows = []
    head = ("| kind | trials | passed | leftover processes | stranded, stopped by the resume "
            "| results altered or lost | resumes completed | faulted apply exits | resume exits |")
    rows.append(head)
    rows.append("|" + "---|" * 9)
    tot = collections.Counter()
    tot_fault, tot_res = collections.Counter(), collections.Counter()
    for kind in kinds + ["total"]:
        rs = recs if kind == "total" else [r for r in recs if r["kind"] == kind]
        if not rs:
            continue
        fault = collections.Counter(r["applies"][0]["exit_text"] for r in rs if r["applies"])
        res = collections.Counter(a["exit_text"] for r in rs for a in r["applies"][1:])
        row = {
            "trials": len(rs),
            "passed": sum(r["passed"] for r in rs),
            "left": sum(len(r["leftovers"]) + len(r["leftovers_after_resume"]) for r in rs),
            "stranded": sum(len(r.get("stranded") or []) for r in rs),
            "altered": sum(len(r["files_altered"]) + len(r["files_lost"]) for r in rs),
            "resumed": sum(r["resume_exit"] == 0 for r in rs),
        }
        name = f"**{kind}**" if kind == "total" else kind
        rows.append(f"| {name} | {row['trials']} | {row['passed']} | {row['left']} | "
                    f"{row['stranded']} | {row['altered']} | {row['resumed']}/{row['trials']} | {codes(fault)} | "
                    f"{codes(res)} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, required=True)
    ap.add_argument("--manifest", default=MANIFEST,
                    help="the manifest every trial applies (default: chaos.toml; "
                         "chaos-sessions.toml runs multi-turn sessions)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "vbench"),
                    help="the vbench binary (default: target/release/vbench); a private copy runs")
    ap.add_argument("--out", help="folder for trials.jsonl and each trial's files "
                                  "(default: a new temp folder)")
    ap.add_argument("--kinds", help="comma-separated trial kinds (default: all); "
                                    + ", ".join(KINDS))
    ap.add_argument("--tmpfs", action="store_true",
                    help="enable full-disk trials (mounts a 64 MiB tmpfs; needs root)")
    ap.add_argument("--min-delay", type=float, default=0.2,
                    help="earliest fault moment, seconds after apply starts (default 0.2)")
    ap.add_argument("--max-delay", type=float, default=11.0,
                    help="latest fault moment, seconds after apply starts (default 11)")
    ap.add_argument("--stop-grace-s", type=float, default=2.0)
    ap.add_argument("--keep", action="store_true",
                    help="keep the results of passed trials too (default: only failed ones)")
    args = ap.parse_args()

    kinds = KINDS if not args.kinds else [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown kinds {unknown}; choose from {KINDS}")
    if "full-disk" in kinds and not (args.tmpfs and os.geteuid() == 0):
        why = "without --tmpfs" if not args.tmpfs else "not root"
        log(f"skipping kind full-disk ({why}: it mounts a tmpfs)")
        kinds = [k for k in kinds if k != "full-disk"]
    if not kinds or args.trials < 1:
        ap.error("nothing to run")
    if not os.access(args.binary, os.X_OK):
        ap.error(f"binary {args.binary} is not an executable file (build it, or pass --binary)")

    # The trials run in their own folders: a relative manifest path would not be found there.
    args.manifest = os.path.abspath(args.manifest)
    if not os.path.isfile(args.manifest):
        ap.error(f"manifest {args.manifest} is not a file")
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="vbench-chaos-"))
    os.makedirs(out, exist_ok=True)
    if os.path.exists(os.path.join(out, "trials")):
        ap.error(f"{out} already holds a campaign (trials/); give a fresh --out")
    bindir = os.path.realpath(tempfile.mkdtemp(prefix="vbench-chaos-bin-"))
    exe = os.path.join(bindir, "vbench")
    shutil.copy2(args.binary, exe)
    os.chmod(exe, 0o755)

    rng = random.Random(args.seed)
    order: list[str] = []
    while len(order) < args.trials:
        block = list(kinds)
        rng.shuffle(block)
        order += block
    order = order[: args.trials]

    camp = Campaign(args, exe, out)
    log(f"chaos: {args.trials} trials, seed {args.seed}, binary {args.binary} (copy {exe}), "
        f"out {out}")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored (a background job)
    recs: list[dict] = []
    t_start = time.monotonic()
    interrupted = False
    try:
        with open(os.path.join(out, "trials.jsonl"), "w") as jl:
            for i, kind in enumerate(order):
                rec = camp.trial(i, kind, rng)
                recs.append(rec)
                jl.write(json.dumps(rec) + "\n")
                jl.flush()
                codes = " ".join(a["exit_text"] for a in rec["applies"])
                m = rec["moments"][0] if rec["moments"] else {}
                at = f"at {m.get('t_s')}s" if m else "no fault"
                log(f"[{i + 1}/{args.trials}] {kind:17} {at:11} exits {codes:14} "
                    f"{'PASS' if rec['passed'] else 'FAIL'} ({rec['duration_s']}s)"
                    + ("" if rec["passed"] else ": " + "; ".join(rec["reasons"])))
                for w in rec["warnings"]:
                    log(f"    warning: {w}")
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: cleaning up")
    finally:
        left = camp.cleanup()
        if left:
            log(f"killed {len(left)} processes at the end: {left}")
        shutil.rmtree(bindir, ignore_errors=True)

    print(f"## vbench chaos campaign: {len(recs)} trials, seed {args.seed}, "
          f"{time.monotonic() - t_start:.0f} s\n")
    print(table(recs, [k for k in KINDS if k in kinds]))
    failed = [r for r in recs if not r["passed"]]
    warned = [r for r in recs if r["warnings"]]
    if failed:
        print("\nFailed trials:\n")
        for r in failed:
            print(f"- #{r['index']} {r['kind']}: " + "; ".join(r["reasons"]))
    if warned:
        print("\nWarnings (not failures):\n")
        for r in warned:
            print(f"- #{r['index']} {r['kind']}: " + "; ".join(r["warnings"]))
    print(f"\nDetails: {os.path.join(out, 'trials.jsonl')}")
    return 0 if recs and not failed and not interrupted and len(recs) == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())

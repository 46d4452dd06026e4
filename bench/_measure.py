"""Helpers for benchmarks: peak memory and CPU time of a process tree, sampled while it runs."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import psutil


def process_kind(proc: psutil.Process) -> str:
    """What a process of the runner's tree is: runner, driver, Chromium's kinds, Ghostscript."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return "other"
    if not cmdline:
        return "other"
    exe = os.path.basename(cmdline[0])
    if exe in ("gs", "gsc") or exe.startswith("gs-"):
        return "ghostscript"
    if any("chrom" in arg for arg in cmdline[:2]):
        kind = next((a.split("=", 1)[1] for a in cmdline if a.startswith("--type=")), "browser")
        return f"chromium {kind}"
    if exe == "node" or "playwright" in " ".join(cmdline[:2]):
        return "playwright driver"
    if "python" in exe or "moodle-archiver" in " ".join(cmdline[:2]):
        return "runner python"
    return exe


class TreeMemorySampler:
    """Samples the summed PSS (or RSS where PSS is unavailable) of a process and its children,
    and the CPU time (user + system) of every process seen in the tree, by kind.

    CPU time a process spends after the last sample before it exits is missed; callers that
    know the exact total (`run_measured`, from the exit status) report it as unattributed.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_bytes = 0
        self.samples = 0
        self.sampler_cpu_seconds = 0.0  # this sampler's own cost (it runs in the caller)
        # pid -> kind, own CPU seconds, CPU seconds of its reaped children, parent pid
        self._cpu: dict[int, tuple[str, float, float, int]] = {}
        self._last_seen: dict[int, int] = {}  # pid -> number of the last sample that saw it
        self._kinds: dict[tuple[int, float, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def cpu_by_kind(self) -> dict[str, float]:
        """Own CPU time of every process seen, plus what a parent reaped beyond that: the time
        its children spent after their last sample, or children never sampled (the kind of
        its sampled children that went away, else "<parent kind>'s children")."""
        totals: dict[str, float] = defaultdict(float)
        gone: dict[int, list[int]] = defaultdict(list)  # parent -> children gone before it
        for pid, (kind, own, _, ppid) in self._cpu.items():
            totals[kind] += own
            if ppid in self._last_seen and self._last_seen[pid] < self._last_seen[ppid]:
                gone[ppid].append(pid)
        for pid, (kind, _, reaped, _) in self._cpu.items():
            children = gone.get(pid, [])
            residual = reaped - sum(self._cpu[c][1] + self._cpu[c][2] for c in children)
            if residual > 0:
                kinds = [self._cpu[c][0] for c in children]
                totals[max(set(kinds), key=kinds.count) if kinds else f"{kind}'s children"] += (
                    residual
                )
        return dict(totals)

    def _kind(self, proc: psutil.Process) -> str:
        key = (proc.pid, proc.create_time(), proc.name())  # the name changes on exec
        if key not in self._kinds:
            self._kinds[key] = process_kind(proc)
        return self._kinds[key]

    def _sample(self) -> int:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                times = proc.cpu_times()
                self._cpu[proc.pid] = (
                    self._kind(proc),
                    times.user + times.system,
                    times.children_user + times.children_system,
                    proc.ppid(),
                )
                self._last_seen[proc.pid] = self.samples
                info = proc.memory_full_info()
                total += getattr(info, "pss", 0) or info.rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self.samples += 1
            self.sampler_cpu_seconds = time.thread_time()
            time.sleep(self.interval)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Measured:
    exit_code: int
    seconds: float
    peak_bytes: int
    stderr_tail: str
    cpu_seconds: float  # the whole tree
    cpu_by_kind: dict[str, float] = field(default_factory=dict)  # sampled; rest unattributed
    sampler_cpu_seconds: float = 0.0


def run_measured(cmd: list[str], env: dict[str, str], interval: float = 0.1) -> Measured:
    """Run `cmd` and measure it: wall time, peak tree memory, CPU time in all and by kind."""
    with tempfile.TemporaryFile() as err_file:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
        with TreeMemorySampler(proc.pid, interval) as sampler:
            # Reaped here for its rusage: every descendant the tree reaped is in it.
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - start
        err_file.seek(0)
        err = err_file.read()
    by_kind = sampler.cpu_by_kind()
    # The exit status has only what was reaped; the driver and Chromium may be left to init.
    reaped = usage.ru_utime + usage.ru_stime
    root = by_kind.get("runner python's children", 0.0)
    if reaped > sum(by_kind.values()):
        by_kind["runner python's children"] = root + reaped - sum(by_kind.values())
    total = sum(by_kind.values())
    return Measured(
        exit_code=proc.returncode,
        seconds=elapsed,
        peak_bytes=sampler.peak_bytes,
        stderr_tail=err.decode(errors="replace")[-2000:],
        cpu_seconds=total,
        cpu_by_kind=by_kind,
        sampler_cpu_seconds=sampler.sampler_cpu_seconds,
    )

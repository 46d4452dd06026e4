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
        self._kinds: dict[tuple[int, float, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def cpu_by_kind(self) -> dict[str, float]:
        """Own CPU time of every process seen, plus what a parent reaped beyond what was seen
        of its children's subtrees: the time they spent after their last sample, or children
        never sampled (given to the most common kind among its children, else "<parent kind>'s
        children"). A child's subtree counts once, by its own samples, even when its parent
        reaped it after both were last sampled in the same round."""
        children: dict[int, list[int]] = defaultdict(list)
        for pid, (_, _, _, ppid) in self._cpu.items():
            if ppid in self._cpu:
                children[ppid].append(pid)
        seen: dict[int, float] = {}

        def subtree(pid: int) -> float:  # CPU time seen of pid and its descendants
            if pid not in seen:
                _, own, reaped, _ = self._cpu[pid]
                seen[pid] = own + max(reaped, sum(subtree(c) for c in children[pid]))
            return seen[pid]

        totals: dict[str, float] = defaultdict(float)
        for pid, (kind, own, reaped, _) in self._cpu.items():
            totals[kind] += own
            residual = reaped - sum(subtree(c) for c in children[pid])
            if residual > 0:
                kinds = [self._cpu[c][0] for c in children[pid]]
                totals[max(set(kinds), key=kinds.count) if kinds else f"{kind}'s children"] += (
                    residual
                )
        return dict(totals)

    def _kind(self, proc: psutil.Process) -> str:
        key = (proc.pid, proc.create_time(), proc.name())  # the name changes on exec
        kind = self._kinds.get(key)
        if kind is None:
            kind = process_kind(proc)
            if kind == "other":  # between fork and exec, or exiting: keep what it was
                return self._cpu[proc.pid][0] if proc.pid in self._cpu else kind
            self._kinds[key] = kind
        return kind

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

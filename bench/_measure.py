"""Helpers for benchmarks: peak memory of a process tree, sampled while it runs."""

from __future__ import annotations

import subprocess
import threading
import time

import psutil


class TreeMemorySampler:
    """Samples the summed PSS (or RSS where PSS is unavailable) of a process and its children."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree_bytes(self) -> int:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                info = proc.memory_full_info()
                total += getattr(info, "pss", 0) or info.rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._tree_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[int, float, int, str]:
    """Run `cmd`; return (exit code, seconds, peak tree memory in bytes, stderr tail)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with TreeMemorySampler(proc.pid) as sampler:
        _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    return proc.returncode, elapsed, sampler.peak_bytes, err.decode(errors="replace")[-2000:]

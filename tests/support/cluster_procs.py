"""Free loopback ports and the supervision of the control plane's processes."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

PORT_CLAIMS_DIR = Path(tempfile.gettempdir()) / "moodle-archive-operator-ports"
# A claim whose owner has no live process is honoured this long (the owner may be starting).
CLAIM_GRACE_SECONDS = 120.0


class ComponentFailed(RuntimeError):
    """A control-plane process exited while it should have been running."""


# ---------------------------------------------------------------- ports


def _claim_is_live(claim: Path) -> bool:
    try:
        owner = Path(claim.read_text().strip())
        age = time.time() - claim.stat().st_mtime
    except OSError:
        return False
    return age < CLAIM_GRACE_SECONDS or any(rec.alive() for rec in read_records(owner))


def claim_free_ports(count: int, owner: Path, claims_dir: Path = PORT_CLAIMS_DIR) -> list[int]:
    """Ports free on 127.0.0.1 and claimed for `owner` (a run directory), so that two clusters
    starting at the same time never pick the same one. Release them with release_ports()."""
    claims_dir.mkdir(parents=True, exist_ok=True)
    ports: list[int] = []
    for _ in range(count * 50):
        if len(ports) == count:
            return ports
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        claim = claims_dir / str(port)
        if port in ports:
            continue
        if claim.exists() and _claim_is_live(claim):
            continue
        claim.unlink(missing_ok=True)
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(owner))
        ports.append(port)
    release_ports(ports, claims_dir)
    raise RuntimeError(f"could not find {count} free loopback ports")


def release_ports(ports: Sequence[int], claims_dir: Path = PORT_CLAIMS_DIR) -> None:
    for port in ports:
        (claims_dir / str(port)).unlink(missing_ok=True)


# ---------------------------------------------------------------- processes


def _stat_fields(path: Path) -> list[str] | None:
    try:
        stat = path.read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _threads_left(pid: int) -> bool:
    """Whether a thread of the process has not exited yet. The main thread of a Go program
    (kube-apiserver, etcd) may show as a zombie while the others still run and hold its
    ports and files: it has exited only when every thread has."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        fields = _stat_fields(task / "stat")
        if fields is not None and fields[0] not in ("Z", "X"):
            return True
    return False


def _start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (tells a reused pid apart); None once
    it has exited (a zombie whose threads have all exited is as good as gone)."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    if fields is None:
        return None
    if fields[0] in ("Z", "X") and not _threads_left(pid):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    log: str

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks


def read_records(run_dir: Path) -> list[ProcessRecord]:
    try:
        raw = json.loads((run_dir / "processes.json").read_text())
    except (OSError, ValueError):
        return []
    return [ProcessRecord(**item) for item in raw]


def _set_parent_death_signal() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Supervisor:
    """Starts processes in their own process groups, logs each to run_dir/logs/<name>.log,
    records them in run_dir/processes.json, notices early exits and stops them all."""

    def __init__(self, run_dir: Path, *, die_with_parent: bool) -> None:
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.die_with_parent = die_with_parent
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._records: list[ProcessRecord] = read_records(run_dir)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                cwd=self.run_dir,
                preexec_fn=_set_parent_death_signal if self.die_with_parent else None,
            )
        self._procs[name] = proc
        ticks = _start_ticks(proc.pid) or 0
        self._records.append(ProcessRecord(name, proc.pid, ticks, str(log)))
        self._save()
        return proc.pid

    def _save(self) -> None:
        path = self.run_dir / "processes.json"
        path.write_text(json.dumps([asdict(r) for r in self._records], indent=1))

    def pids(self) -> dict[str, int]:
        return {r.name: r.pid for r in self._records if r.alive()}

    def check(self) -> None:
        """Raise ComponentFailed with the log's tail if a started process has exited."""
        for name, proc in self._procs.items():
            code = proc.poll()
            if code is not None:
                log = self.log_dir / f"{name}.log"
                raise ComponentFailed(
                    f"{name} exited with code {code}; last lines of {log}:\n{log_tail(log)}"
                )

    def stop_all(self, grace_seconds: float = 8.0) -> list[str]:
        """SIGTERM each process group (last started first), SIGKILL what outlives the grace.
        Returns the names of processes that had to be killed."""
        killed = stop_records(self._records, grace_seconds)
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        self._procs.clear()
        self._records = []
        self._save()
        return killed


def _signal_group(rec: ProcessRecord, sig: signal.Signals) -> None:
    if not rec.alive():
        return
    try:
        os.killpg(rec.pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, sig)


def stop_records(records: Sequence[ProcessRecord], grace_seconds: float) -> list[str]:
    killed: list[str] = []
    for rec in reversed(records):
        _signal_group(rec, signal.SIGTERM)
        if not wait_for(lambda rec=rec: not rec.alive(), grace_seconds):
            _signal_group(rec, signal.SIGKILL)
            wait_for(lambda rec=rec: not rec.alive(), 5.0)
            killed.append(rec.name)
    return killed


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def unmount_below(directory: Path) -> list[str]:
    """Lazily unmount whatever is mounted under directory (deepest first); returns the targets."""
    prefix = str(directory.resolve()) + "/"
    targets: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(prefix):
                targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    return targets

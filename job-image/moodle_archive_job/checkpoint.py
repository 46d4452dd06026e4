"""Per-attempt checkpoints of a job: what a replacement or sibling pod may trust without rendering.

Layout under `<job dir>/checkpoints/`::

    attempts/<attemptid>/...      the attempt's files (report.pdf, report.html, attachments/...)
    staging/<shard>-<id>-<rand>/  an attempt being written (never trusted, removed on open)
    manifest-<shard>.jsonl        one JSON line per finished attempt, appended by that shard only

An attempt is checkpointed in this order: its files are written into a staging directory and
fsynced, the directory is renamed to `attempts/<attemptid>` (the parent fsynced), and only then
is one manifest line appended with a single `write` and an `fsync`. The line holds the SHA-256
and size of every file and what the ZIP needs (folder name, file name, archive names).

Reading trusts a line only if it parses completely and every file it names exists with that
size and SHA-256. A torn last line (a pod killed mid-append) is ignored; a line whose files are
missing or differ is dropped: its attempt counts as not done, its stale files are removed and a
`dropped` line is appended so that other readers stop counting it. Per manifest the latest line
of an attempt wins; across manifests any verified entry does.

Nothing here knows the Moodle token: entries hold only names, sizes and checksums.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .archive_writer import check_member_name, sha256_file

MANIFEST_GLOB = "manifest-*.jsonl"
_ATTEMPTID_RE = re.compile(rb'"attemptid"\s*:\s*(\d+)')


class CheckpointFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # the archive name below the attempt's folder, e.g. "attempt-7.pdf"
    path: str  # below attempts/<attemptid>/ in the store
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    _safe = field_validator("name", "path")(check_member_name)


class CheckpointEntry(BaseModel):
    """One manifest line: a finished attempt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attemptid: int = Field(ge=0)
    kind: Literal["attempt"] = "attempt"
    foldername: str
    filename: str
    files: tuple[CheckpointFile, ...]


class DroppedEntry(BaseModel):
    """A manifest line that withdraws earlier entries of an attempt (found corrupt)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attemptid: int = Field(ge=0)
    kind: Literal["dropped"] = "dropped"


Record = CheckpointEntry | DroppedEntry


@dataclass(frozen=True)
class TornLine:
    """A line that did not parse (a torn append); `attemptid` when it can still be read."""

    attemptid: int | None


@dataclass
class ParsedManifest:
    lines: list[Record | TornLine] = field(default_factory=list)

    def latest(self) -> dict[int, Record | TornLine]:
        """Per attempt, its last line in this manifest."""
        latest: dict[int, Record | TornLine] = {}
        for line in self.lines:
            if line.attemptid is not None:
                latest[line.attemptid] = line
        return latest


def parse_manifest(data: bytes) -> ParsedManifest:
    """The lines of one manifest file, in order; unparsable ones become `TornLine`s."""
    parsed = ParsedManifest()
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            kind = obj.get("kind") if isinstance(obj, dict) else None
            record: Record = (
                DroppedEntry.model_validate(obj) if kind == "dropped"
                else CheckpointEntry.model_validate(obj)
            )
        except (ValueError, ValidationError, AttributeError):
            match = _ATTEMPTID_RE.search(raw)
            parsed.lines.append(TornLine(int(match.group(1)) if match else None))
            continue
        parsed.lines.append(record)
    return parsed


def entry_line(entry: Record) -> bytes:
    # attemptid first: a torn line still tells which attempt it was about.
    data = {"attemptid": entry.attemptid, **entry.model_dump(mode="json", exclude={"attemptid"})}
    return (json.dumps(data, separators=(",", ":"), ensure_ascii=True) + "\n").encode()


def verify_entry(attempt_dir: Path, entry: CheckpointEntry) -> bool:
    """Every file of the entry exists below `attempt_dir` with its size and SHA-256."""
    try:
        for f in entry.files:
            path = attempt_dir / f.path
            if path.is_symlink() or not path.is_file() or path.stat().st_size != f.size:
                return False
            if sha256_file(path) != f.sha256:
                return False
    except OSError:
        return False
    return True


@dataclass
class Verified:
    """What a reader may trust for a set of attempts."""

    entries: dict[int, CheckpointEntry]  # verified, ready to zip
    corrupt: set[int]  # had an entry or a torn line, none verified: render again


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def write_json_atomic(path: Path, data: object) -> None:
    """Write `path` via a temporary sibling, fsync and rename (and fsync the directory)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class CheckpointStore:
    """The checkpoints of one job as seen by one shard (which appends to its own manifest)."""

    def __init__(self, root: Path, shard_index: int = 0) -> None:
        self.root = root
        self.shard_index = shard_index
        self.attempts_dir = root / "attempts"
        self.staging_dir = root / "staging"
        self.manifest = root / f"manifest-{shard_index}.jsonl"

    def open(self) -> None:
        """Create the layout, end a torn last line of this shard's manifest, drop its staging."""
        self.attempts_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.staging_dir.glob(f"{self.shard_index}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if self.manifest.exists():
            with self.manifest.open("rb+") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":  # the next line must not glue onto the torn one
                        self._append(b"\n")

    # --- reading -------------------------------------------------------------------------------

    def manifests(self) -> Iterator[ParsedManifest]:
        for path in sorted(self.root.glob(MANIFEST_GLOB)):
            try:
                yield parse_manifest(path.read_bytes())
            except FileNotFoundError:
                continue

    def verify(self, attemptids: Iterable[int]) -> Verified:
        """Check the entries of `attemptids` against the files (reads and hashes them)."""
        wanted = set(attemptids)
        candidates: dict[int, list[CheckpointEntry]] = {}
        claimed: set[int] = set()  # the last line in some manifest is an entry or torn
        for parsed in self.manifests():
            for attemptid, line in parsed.latest().items():
                if attemptid not in wanted or isinstance(line, DroppedEntry):
                    continue
                claimed.add(attemptid)
                if isinstance(line, CheckpointEntry):
                    candidates.setdefault(attemptid, []).append(line)
        entries: dict[int, CheckpointEntry] = {}
        for attemptid, options in candidates.items():
            for entry in reversed(options):
                if verify_entry(self.attempt_dir(attemptid), entry):
                    entries[attemptid] = entry
                    break
        return Verified(entries=entries, corrupt=claimed - set(entries))

    def attempt_dir(self, attemptid: int) -> Path:
        return self.attempts_dir / str(attemptid)

    # --- writing -------------------------------------------------------------------------------

    def discard(self, attemptids: Iterable[int]) -> None:
        """Withdraw attempts: remove their files and say so in this shard's manifest."""
        for attemptid in sorted(attemptids):
            shutil.rmtree(self.attempt_dir(attemptid), ignore_errors=True)
            self._append(entry_line(DroppedEntry(attemptid=attemptid)))

    def staging(self, attemptid: int) -> Path:
        """A fresh directory to write one attempt's files into."""
        path = self.staging_dir / f"{self.shard_index}-{attemptid}-{secrets.token_hex(4)}"
        path.mkdir(parents=True)
        return path

    def commit(
        self,
        attemptid: int,
        foldername: str,
        filename: str,
        staged: Path,
        files: Iterable[tuple[str, str]],
    ) -> CheckpointEntry:
        """Make a staged attempt durable and record it. `files`: (archive name, staged path)."""
        entry = CheckpointEntry(
            attemptid=attemptid,
            foldername=foldername,
            filename=filename,
            files=tuple(
                CheckpointFile(
                    name=name,
                    path=rel,
                    size=(staged / rel).stat().st_size,
                    sha256=sha256_file(staged / rel),
                )
                for name, rel in files
            ),
        )
        _fsync_tree(staged)
        target = self.attempt_dir(attemptid)
        if target.exists():  # stale files of an attempt killed between rename and manifest
            shutil.rmtree(target)
        os.rename(staged, target)
        fsync_dir(self.attempts_dir)
        self._append(entry_line(entry))
        return entry

    def _append(self, line: bytes) -> None:
        fd = os.open(self.manifest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a short write is a torn line; readers ignore it
                raise OSError(f"short write to {self.manifest.name}")
            os.fsync(fd)
        finally:
            os.close(fd)


class ManifestCounter:
    """How many of a job's attempts the manifests record, read incrementally (no hashing).

    For progress and for waiting on other shards; zipping always goes through `verify`.
    """

    def __init__(self, root: Path, attemptids: Iterable[int]) -> None:
        self.root = root
        self.wanted = set(attemptids)
        self._offsets: dict[Path, int] = {}
        self._latest: dict[Path, dict[int, bool]] = {}

    def done(self) -> set[int]:
        for path in sorted(self.root.glob(MANIFEST_GLOB)):
            self._read(path)
        present: set[int] = set()
        for latest in self._latest.values():
            present |= {k for k, ok in latest.items() if ok}
        return present & self.wanted

    def _read(self, path: Path) -> None:
        offset = self._offsets.get(path, 0)
        try:
            with path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # only complete lines; a partial one is read next time
        if end == 0:
            return
        self._offsets[path] = offset + end
        latest = self._latest.setdefault(path, {})
        for attemptid, line in parse_manifest(data[:end]).latest().items():
            latest[attemptid] = isinstance(line, CheckpointEntry)

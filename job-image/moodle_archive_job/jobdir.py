"""A job's persistent directory, `<work_dir>/job-<jobid>/`, shared by its pods and shards.

    checkpoints/     finished attempts and their manifests (see checkpoint.py)
    diagnostics/     per failed attempt (written by the render stage; never deleted here)
    scratch/         backups being downloaded, per process
    <archive>.zip    the ZIP being built by the finisher
    upload.json      the draft Moodle holds the uploaded ZIP in, before it is processed
    uploaded.json    Moodle processed the archive: the job is done
    failed.json      a shard failed for good (Moodle was told): the others stop

It lives as long as the job is unfinished; after success everything but `diagnostics/` and
`uploaded.json` (a few bytes that tell a late restarted pod the job is over) is removed.
On an emptyDir it dies with the pod (no resume); on a work volume it survives.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .checkpoint import write_json_atomic

KEEP_AFTER_SUCCESS = frozenset({"diagnostics", "uploaded.json"})


class ShardFailure(BaseModel):
    shard_index: int
    message: str


class JobDir:
    def __init__(self, work_dir: str | Path | None, job_id: str) -> None:
        base = Path(work_dir) if work_dir else Path(tempfile.gettempdir())
        self.path = base / f"job-{job_id}"
        self.checkpoints = self.path / "checkpoints"
        self.diagnostics = self.path / "diagnostics"
        self.upload_state = self.path / "upload.json"
        self.uploaded_state = self.path / "uploaded.json"
        self.failed_state = self.path / "failed.json"

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def scratch(self, shard_index: int) -> Path:
        path = self.path / f"scratch-{shard_index}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def zip_path(self, archive_name: str) -> Path:
        return self.path / archive_name

    def read_state(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_state(self, path: Path, data: dict[str, Any]) -> None:
        write_json_atomic(path, data)

    def failure(self) -> ShardFailure | None:
        data = self.read_state(self.failed_state)
        if data is None:
            return None
        try:
            return ShardFailure.model_validate(data)
        except ValueError:
            return ShardFailure(shard_index=-1, message="a shard failed")

    def record_failure(self, shard_index: int, message: str) -> None:
        if not self.failed_state.exists():
            self.write_state(
                self.failed_state,
                ShardFailure(shard_index=shard_index, message=message).model_dump(),
            )

    def remove_after_success(self) -> None:
        if not self.path.is_dir():
            return
        for child in self.path.iterdir():
            if child.name in KEEP_AFTER_SUCCESS:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

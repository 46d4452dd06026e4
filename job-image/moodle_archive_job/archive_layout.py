"""Where each file goes in the archive: worker 4.x's nested layout or worker 5.0's flat one.

Nested (spec 5.2, the default, byte for byte as before): `attempts/<folder>/<file>`, with
the reference folder-collision rule, `attachments/<slot>/<name>` below it, `backups/<name>`.
Flat (5.0's `archive_flatten`): everything at the top level, prefixed with what it is:
`attempt_<id>.<file>`, `attempt_<id>.<report name>.attachment.<slot>.<name>`,
`backup.<name>`. The metadata CSV is `attempts_metadata.csv` in both; its `path` column
stays the attempt's common prefix without extension (what Moodle matches files with).
Whether every file gets a `.sha256` sidecar (5.0's `archive_filehashes`) is the writer's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .folders import FolderAllocator
from .settings import RunnerSettings
from .task import ArchiveStructure, ArchiveTask

METADATA_CSV = "attempts_metadata.csv"
_ATTACHMENTS = "attachments/"


@dataclass(frozen=True)
class ArchiveOptions:
    structure: ArchiveStructure = ArchiveStructure.NESTED
    sidecars: bool = True

    @classmethod
    def for_task(cls, task: ArchiveTask, settings: RunnerSettings) -> ArchiveOptions:
        """What the request (the ArchiveJob spec) says, else the runner's settings."""
        default = ArchiveStructure.FLAT if settings.archive_flatten else ArchiveStructure.NESTED
        return cls(
            structure=task.archive_structure or default,
            sidecars=(
                settings.archive_filehashes
                if task.checksum_sidecars is None
                else task.checksum_sidecars
            ),
        )


@dataclass
class ArchiveLayout:
    structure: ArchiveStructure = ArchiveStructure.NESTED
    _folders: FolderAllocator = field(default_factory=FolderAllocator)

    def attempt(self, attemptid: int, foldername: str, filename: str) -> AttemptPlace:
        """One attempt's place; call in `attemptids` order (folder collisions depend on it)."""
        if self.structure is ArchiveStructure.FLAT:
            return AttemptPlace(f"attempt_{attemptid}.", f"attempt_{attemptid}.{filename}")
        folder = f"attempts/{self._folders.allocate(foldername, attemptid)}/"
        return AttemptPlace(folder, f"{folder}{filename}", flat=False)

    def backup(self, filename: str) -> str:
        if self.structure is ArchiveStructure.FLAT:
            return f"backup.{filename}"
        return f"backups/{filename}"


@dataclass(frozen=True)
class AttemptPlace:
    """`base`: what every member of the attempt starts with; `prefix`: its report's path
    without extension (the CSV's `path`)."""

    base: str
    prefix: str
    flat: bool = True

    def member(self, name: str) -> str:
        """The archive member for one of the attempt's files, named as in its checkpoint:
        `<report>.pdf`, `<report>.html` or `attachments/<slot>/<name>`."""
        if self.flat and name.startswith(_ATTACHMENTS):
            slot, attachment = name[len(_ATTACHMENTS) :].split("/", 1)
            return f"{self.prefix}.attachment.{slot}.{attachment}"
        return f"{self.base}{name}"

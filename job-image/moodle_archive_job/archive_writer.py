"""The ZIP artifact, written as the job goes (spec 5.1, 5.2, 5.5).

Every regular file gets a sibling `<name>.sha256` entry holding only the
lowercase hex SHA-256 of its content (unless sidecars are switched off). Entries are
relative paths, files only (no directory entries), in the order they are added, so the
archive does not depend on how many attempts were rendered at once.
"""

from __future__ import annotations

import hashlib
import time
import zipfile
from pathlib import Path, PurePosixPath

COMPRESSION = {
    "STORED": zipfile.ZIP_STORED,
    "DEFLATED": zipfile.ZIP_DEFLATED,
    "BZIP2": zipfile.ZIP_BZIP2,
    "LZMA": zipfile.ZIP_LZMA,
}
_BUF = 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_BUF):
            digest.update(chunk)
    return digest.hexdigest()


def check_member_name(name: str) -> str:
    """A relative POSIX path inside the archive; nothing that could escape on extraction."""
    path = PurePosixPath(name)
    if (
        not name
        or path.is_absolute()
        or "\\" in name
        or "\0" in name
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise ValueError(f"refusing archive member name {name!r}")
    return name


class ArchiveWriter:
    def __init__(self, path: Path, compression: str = "DEFLATED", sidecars: bool = True) -> None:
        self.path = path
        self.sidecars = sidecars  # worker 5.0 can switch them off (`archive_filehashes`)
        self._zip = zipfile.ZipFile(
            path, "w", compression=COMPRESSION[compression], allowZip64=True, compresslevel=None
        )
        self._names: set[str] = set()
        self._timestamp = time.localtime()[:6]

    def _info(self, name: str) -> zipfile.ZipInfo:
        check_member_name(name)
        if name in self._names:
            raise ValueError(f"duplicate archive member {name!r}")
        self._names.add(name)
        info = zipfile.ZipInfo(name, date_time=self._timestamp)  # type: ignore[arg-type]
        info.compress_type = self._zip.compression
        info.external_attr = 0o644 << 16
        return info

    def add_file(self, name: str, source: Path) -> str:
        """Add `source` as `name` plus its `.sha256` sidecar; return the SHA-256."""
        digest = hashlib.sha256()
        info = self._info(name)
        with source.open("rb") as src, self._zip.open(info, "w", force_zip64=True) as dst:
            while chunk := src.read(_BUF):
                digest.update(chunk)
                dst.write(chunk)
        checksum = digest.hexdigest()
        if self.sidecars:
            self._zip.writestr(self._info(name + ".sha256"), checksum)
        return checksum

    def add_bytes(self, name: str, data: bytes) -> str:
        checksum = hashlib.sha256(data).hexdigest()
        self._zip.writestr(self._info(name), data)
        if self.sidecars:
            self._zip.writestr(self._info(name + ".sha256"), checksum)
        return checksum

    def has_prefix(self, prefix: str) -> bool:
        return any(n.startswith(prefix) for n in self._names)

    def close(self) -> None:
        self._zip.close()

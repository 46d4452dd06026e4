"""Attempt folder names in the archive, with the reference collision rule (spec 5.2).

If `attempts/<foldername>` already exists (as a folder of an earlier attempt or
as a parent of one), the attempt goes to `<foldername>_<attemptid>`. Allocation
happens in `attemptids` order, so the first attempt keeps the plain name.
"""

from __future__ import annotations


class FolderAllocator:
    def __init__(self) -> None:
        self._taken: set[str] = set()

    def _exists(self, folder: str) -> bool:
        return folder in self._taken

    def allocate(self, foldername: str, attemptid: int) -> str:
        folder = foldername
        if self._exists(folder):
            folder = f"{foldername}_{attemptid}"
            suffix = 2
            while self._exists(folder):  # Moodle could send `x_5` for another attempt too
                folder = f"{foldername}_{attemptid}_{suffix}"
                suffix += 1
        parts = folder.split("/")
        for i in range(1, len(parts) + 1):
            self._taken.add("/".join(parts[:i]))
        return folder

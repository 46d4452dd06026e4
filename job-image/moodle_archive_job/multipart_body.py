"""A multipart/form-data request body streamed from a file slice, with its exact length.

upload.php takes the archive as one file field. Streaming keeps memory flat however
large the file (requests would read it whole), and knowing the body's length before
sending lets the chunked upload keep each whole request within Moodle's limit
(`post_max_size` counts the body, not just the file). Part headers are rendered by
urllib3, as requests renders them.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from urllib3.fields import RequestField

_BLOCK = 1024 * 1024


def _boundary() -> str:
    return binascii.hexlify(os.urandom(16)).decode()


class MultipartBody:
    """Form fields, then one file part holding `length` bytes of `path` from `offset`."""

    def __init__(
        self,
        fields: Mapping[str, str],
        file_field: str,
        filename: str,
        content_type: str,
        path: Path | None,
        offset: int = 0,
        length: int = 0,
        boundary: str | None = None,
    ) -> None:
        self.boundary = boundary or _boundary()
        self._path, self._offset, self._length = path, offset, length
        head = b""
        for name, value in fields.items():
            head += self._part_header(RequestField(name, value)) + value.encode() + b"\r\n"
        part = RequestField(file_field, b"", filename=filename)
        self._head = head + self._part_header(part, content_type)
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()

    def _part_header(self, part: RequestField, content_type: str | None = None) -> bytes:
        part.make_multipart(content_type=content_type)
        return f"--{self.boundary}\r\n".encode() + part.render_headers().encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def overhead(self) -> int:
        """Bytes of the request body besides the file content."""
        return len(self._head) + len(self._tail)

    def __len__(self) -> int:
        return self.overhead + self._length

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        if self._length:
            assert self._path is not None
            with self._path.open("rb") as fh:
                fh.seek(self._offset)
                left = self._length
                while left:
                    block = fh.read(min(_BLOCK, left))
                    if not block:
                        raise OSError(f"{self._path.name} is shorter than expected")
                    left -= len(block)
                    yield block
        yield self._tail

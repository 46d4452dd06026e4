"""`attempts_metadata.csv` (spec 5.4).

Columns are the keys of the first metadata row in Moodle's order plus a final
`path` (the attempt's files relative to the archive root, without extension).
Dialect: Python's csv defaults with QUOTE_NONNUMERIC: comma, `"` quoting of all
non-numeric values, numbers bare, CRLF line ends, a header row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any


def build_metadata_csv(rows: Sequence[Mapping[str, Any]], paths: Mapping[int, str]) -> bytes:
    if not rows:
        return b""
    columns = [*rows[0].keys(), "path"]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, quoting=csv.QUOTE_NONNUMERIC)
    writer.writeheader()
    for row in rows:
        record = {key: _cell(row.get(key)) for key in columns if key != "path"}
        record["path"] = paths.get(int(row["attemptid"]), "")
        writer.writerow(record)
    return buffer.getvalue().encode("utf-8")


def _cell(value: Any) -> Any:
    # Booleans would print as True/False unquoted; Moodle never sends them, keep them text.
    if isinstance(value, bool):
        return str(int(value))
    return "" if value is None else value

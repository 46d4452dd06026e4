"""Reading a request body as the reference worker does, with a size limit."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from moodle_archive_job.request_parsing import MSG_INVALID_REQUEST, MSG_NOT_JSON, RequestRejected


def too_large(limit: int) -> RequestRejected:
    return RequestRejected(
        f"Request payload is too large (at most {limit} bytes are accepted).", 413, "too_large"
    )


def is_json_content_type(value: str | None) -> bool:
    """Flask's `request.is_json`: application/json or application/*+json."""
    if not value:
        return False
    mimetype = value.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json_body(request: Request, limit: int) -> Any:
    """The decoded JSON body; RequestRejected with the reference's messages, or 413."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestRejected(MSG_INVALID_REQUEST, 400, "malformed_json")
        if int(declared) > limit:
            raise too_large(limit)
    if not is_json_content_type(request.headers.get("content-type")):
        raise RequestRejected(MSG_NOT_JSON, 400, "not_json")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise RequestRejected(MSG_INVALID_REQUEST, 400, "malformed_json") from None

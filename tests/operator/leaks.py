"""Searching everything a user can see for a token."""

from __future__ import annotations

import json
from typing import Any

from tests.operator.conftest import Harness


def visible_text(h: Harness, *extra: str) -> str:
    """ArchiveJobs, Events, ConfigMaps, Jobs and pods of the namespace, every log, metrics."""
    api = h.api
    parts: list[Any] = [
        h.archivejobs(),
        api.sanitize_for_serialization(h.core.list_namespaced_event(h.namespace)),
        api.sanitize_for_serialization(h.core.list_namespaced_config_map(h.namespace)),
        api.sanitize_for_serialization(h.batch.list_namespaced_job(h.namespace)),
        api.sanitize_for_serialization(h.core.list_namespaced_pod(h.namespace)),
    ]
    texts = [json.dumps(parts), h.operator_logs(), *(p.logs() for p in h.players), *extra]
    for op in h.operators:
        if op.alive():
            texts.append(op.metrics())
    return "\n".join(texts)


def assert_no_token_leak(h: Harness, *extra: str) -> None:
    text = visible_text(h, *extra)
    assert h.tokens, "no token was used"
    for token in h.tokens:
        assert token not in text, "a Moodle token leaked"

"""Small helpers for the tests' own Kubernetes API calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from kubernetes.client.rest import ApiException

T = TypeVar("T")


def read_or_none(read: Callable[[], T]) -> T | None:
    """What `read` returns, or None when the API server answers 404 (other errors raise)."""
    try:
        return read()
    except ApiException as err:
        if err.status == 404:
            return None
        raise

"""An in-memory `KubeApi` for the gateway's fast tests (the cluster tests use the real one)."""

from __future__ import annotations

import copy
import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

from moodle_archive_operator.archivejob import LABEL_FINISHED
from moodle_archive_operator.gateway.kube import KubeError


class FakeKube:
    def __init__(self, namespace: str = "jobs") -> None:
        self.namespace = namespace
        self.archivejobs: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[str] = []
        # operation name -> KubeError raised on its next call(s)
        self.fail: dict[str, KubeError] = {}
        # operation name -> callable run before it (to simulate races)
        self.before: dict[str, Any] = {}
        self._rv = itertools.count(1)

    def _enter(self, op: str) -> None:
        self.calls.append(op)
        hook = self.before.pop(op, None)
        if hook is not None:
            hook()
        if op in self.fail:
            raise self.fail[op]

    def add_archivejob(self, name: str, phase: str | None = None, **status: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "labels": {"moodlearchiver.io/job-id": name.removeprefix("archive-")},
            },
            "spec": {"jobId": name.removeprefix("archive-")},
        }
        if phase is not None:
            obj["status"] = {"phase": phase, **status}
        self.archivejobs[name] = obj
        return obj

    async def list_archivejobs(self, timeout: float) -> list[dict[str, Any]]:
        self._enter("list_archivejobs")
        return [
            copy.deepcopy(o)
            for o in self.archivejobs.values()
            if o["metadata"].get("labels", {}).get(LABEL_FINISHED) != "true"
        ]

    async def get_archivejob(self, name: str, timeout: float) -> dict[str, Any] | None:
        self._enter("get_archivejob")
        obj = self.archivejobs.get(name)
        return copy.deepcopy(obj) if obj else None

    async def create_archivejob(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._enter("create_archivejob")
        name = body["metadata"]["name"]
        if name in self.archivejobs:
            raise KubeError(409, "AlreadyExists")
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(next(self._rv)),
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self.archivejobs[name] = obj
        return copy.deepcopy(obj)

    async def delete_archivejob(self, name: str, timeout: float) -> None:
        self._enter("delete_archivejob")
        obj = self.archivejobs.pop(name, None)
        if obj is not None:  # garbage collection of owned Secrets
            uid = obj["metadata"]["uid"]
            for sname, secret in list(self.secrets.items()):
                if any(r["uid"] == uid for r in secret["metadata"].get("ownerReferences", [])):
                    del self.secrets[sname]

    async def create_secret(self, body: dict[str, Any], timeout: float) -> None:
        self._enter("create_secret")
        name = body["metadata"]["name"]
        if name in self.secrets:
            raise KubeError(409, "AlreadyExists")
        self.secrets[name] = copy.deepcopy(body)

    async def delete_secret(self, name: str, timeout: float) -> None:
        self._enter("delete_secret")
        self.secrets.pop(name, None)

    async def create_event(self, body: dict[str, Any], timeout: float) -> None:
        self._enter("create_event")
        self.events.append(copy.deepcopy(body))

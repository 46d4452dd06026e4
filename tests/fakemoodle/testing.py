"""Helpers for tests that talk to the fake Moodle directly (not through a worker)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests

from .server import FakeMoodle
from .state import Job, Quiz
from .ws_functions import ARCHIVINGMOD_QUIZ_SECTIONS, QUIZ_ARCHIVER_SECTIONS


def encode_params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Moodle REST encoding: lists as ``name[]``, mappings as ``name[key]``, bools as 1/0."""
    pairs: list[tuple[str, str]] = []

    def add(name: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, sub in value.items():
                add(f"{name}[{key}]", sub)
        elif isinstance(value, list | tuple):
            for sub in value:
                add(f"{name}[]", sub)
        elif isinstance(value, bool):
            pairs.append((name, "1" if value else "0"))
        elif value is not None:
            pairs.append((name, str(value)))

    for key, value in params.items():
        add(key, value)
    return pairs


def decode_first_json(text: str) -> Any:
    """The first JSON value of a body (the report answer is followed by ``</body></html>``)."""
    value, _end = json.JSONDecoder().raw_decode(text)
    return value


class WsClient:
    """Minimal client for the fake Moodle's REST endpoint, upload.php and pluginfile.php."""

    def __init__(self, moodle: FakeMoodle, token: str, method: str = "GET") -> None:
        self.moodle = moodle
        self.token = token
        self.method = method
        self.session = requests.Session()

    def raw(
        self, wsfunction: str | None, params: Mapping[str, Any] | None = None, **extra: Any
    ) -> requests.Response:
        query = {"wstoken": self.token, "moodlewsrestformat": "json", **extra}
        if wsfunction is not None:
            query["wsfunction"] = wsfunction
        pairs = encode_params({**query, **(params or {})})
        if self.method == "GET":
            return self.session.get(self.moodle.ws_url, params=pairs, timeout=30)
        return self.session.post(self.moodle.ws_url, data=pairs, timeout=30)

    def call(self, wsfunction: str | None, **params: Any) -> Any:
        response = self.raw(wsfunction, params)
        response.raise_for_status()
        return decode_first_json(response.text)

    def upload(
        self, content: bytes, filename: str = "archive.zip", **form: Any
    ) -> requests.Response:
        data = {"token": self.token, "filepath": "/", "itemid": 0, **form}
        return self.session.post(
            self.moodle.upload_url, data=data, files={"file_1": (filename, content)}, timeout=30
        )


UPLOAD_FIELDS = ("component", "contextid", "userid", "filearea", "filename", "filepath", "itemid")


def artifact_params(upload: Mapping[str, Any], sha256: str) -> dict[str, Any]:
    """``process_uploaded_artifact`` parameters from an upload.php reply entry and a checksum."""
    return {**{f"artifact_{k}": upload[k] for k in UPLOAD_FIELDS}, "artifact_sha256sum": sha256}


def sections(protocol: str = "quiz_archiver", **overrides: bool) -> dict[str, bool]:
    names = QUIZ_ARCHIVER_SECTIONS if protocol == "quiz_archiver" else ARCHIVINGMOD_QUIZ_SECTIONS
    flags = dict.fromkeys(names, True)
    flags.update(overrides)
    return flags


def report_params(job: Job, quiz: Quiz, attemptid: int, **overrides: Any) -> dict[str, Any]:
    """Parameters of a valid ``quiz_archiver_generate_attempt_report`` call for ``job``."""
    task = job.request_body["task_archive_quiz_attempts"]
    params: dict[str, Any] = {
        "jobid": job.jobid,
        "courseid": quiz.courseid,
        "cmid": quiz.cmid,
        "quizid": quiz.quizid,
        "attemptid": attemptid,
        "foldernamepattern": task["foldername_pattern"],
        "filenamepattern": task["filename_pattern"],
        "sections": {k: v == "1" for k, v in task["sections"].items()},
        "attachments": task["sections"]["attachments"] == "1",
    }
    params.update(overrides)
    return params

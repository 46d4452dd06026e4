"""Request bodies shaped exactly like the plugins send them (spec 2.2 and 9.3)."""

from __future__ import annotations

import copy
from typing import Any

from moodle_archive_job.task import ArchiveTask

TOKEN = "0123456789abcdef0123456789abcdef"
BASE = "https://moodle.example"

SECTIONS_4_1 = {
    "header": "1",
    "quiz_feedback": "1",
    "quiz_grade": "1",
    "question": "1",
    "question_correctness": "1",
    "question_marks": "1",
    "question_feedback": "1",
    "general_feedback": "1",
    "rightanswer": "1",
    "history": "1",
    "attachments": "1",
}


def v7_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "api_version": 7,
        "moodle_base_url": BASE,
        "moodle_ws_url": f"{BASE}/webservice/rest/server.php",
        "moodle_upload_url": f"{BASE}/webservice/upload.php",
        "wstoken": TOKEN,
        "courseid": 9,
        "cmid": 23,
        "quizid": 12,
        "task_archive_quiz_attempts": {
            "attemptids": [24, 25, 23],
            "fetch_metadata": True,
            "sections": dict(SECTIONS_4_1),
            "paper_format": "A4",
            "keep_html_files": True,
            "foldername_pattern": "${username}/${attemptid}-${date}_${time}",
            "filename_pattern": "attempt-${attemptid}-${username}-${date}_${time}",
            "image_optimize": False,
        },
        "task_moodle_backups": [
            {
                "backupid": "d68a1f0c9e3b4a5f8e7d6c5b4a392817",
                "userid": 2,
                "context": 66,
                "component": "backup",
                "filearea": "activity",
                "filepath": "/",
                "filename": "quiz_archiver-activity-backup-23-20260101-120000.mbz",
                "itemid": None,
                "pathnamehash": "abc",
                "file_download_url": f"{BASE}/webservice/pluginfile.php/66/backup/activity/"
                "quiz_archiver-activity-backup-23-20260101-120000.mbz",
            }
        ],
        "archive_filename": "quiz-archive-QA-9-Reference Quiz-12-2026-01-01_12-00-00",
    }
    body.update(overrides)
    return copy.deepcopy(body)


def v1_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "api_version": 1,
        "taskid": 5,
        "moodle_api": {
            "wstoken": TOKEN,
            "base_url": BASE,
            "webservice_url": f"{BASE}/webservice/rest/server.php",
            "upload_url": f"{BASE}/webservice/upload.php",
        },
        "job": {
            "attemptids": [3, 4],
            "report_sections": {
                k: "1"
                for k in (
                    "header",
                    "quiz_feedback",
                    "question",
                    "question_feedback",
                    "general_feedback",
                    "rightanswer",
                    "history",
                    "attachments",
                )
            },
            "paper_format": "A4",
            "archive_filename": "quiz-archive-5",
            "foldername_pattern": "${username}/${attemptid}",
            "filename_pattern": "attempt-${attemptid}",
            "image_optimize": False,
            "fetch_metadata": True,
            "fetch_attachments": True,
            "keep_html_files": False,
        },
    }
    body.update(overrides)
    return copy.deepcopy(body)


def minimal_task(**extra: Any) -> ArchiveTask:
    """The smallest valid quiz_archiver task (no attempts), with `extra` fields."""
    return ArchiveTask.model_validate({
        "protocol": "quiz_archiver/v7",
        "moodle": {"base_url": BASE, "ws_url": f"{BASE}/webservice/rest/server.php",
                   "upload_url": f"{BASE}/webservice/upload.php"},
        "archive_filename": "quiz-archive", "courseid": 1, "cmid": 2, "quizid": 3, **extra,
    })  # fmt: skip

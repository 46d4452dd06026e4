"""Worker 5.0's archive options (flat structure, no SHA-256 sidecars) with real Chromium, and
the default layout unchanged, member by member and in order."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from moodle_archive_job.progress import Phase
from tests.fakemoodle import FakeMoodle, Job, Quiz
from tests.runner.conftest import fast_settings, run_fake_job

pytestmark = pytest.mark.browser

FOLDER, FILE = "${username}/${attemptid}", "attempt-${attemptid}"


def _job(moodle: FakeMoodle, quiz: Quiz, **options: bool) -> Job:
    return moodle.create_job(quiz, keep_html_files=True, backups=("quiz",),
                             foldername_pattern=FOLDER, filename_pattern=FILE,
                             **options)  # fmt: skip


def _members(zf: zipfile.ZipFile) -> list[tuple[str, bytes]]:
    """Names in order with contents; PDFs by their presence only (rendered anew each run)."""
    return [(i.filename, b"" if i.filename.endswith(".pdf") else zf.read(i)) for i in zf.infolist()]


def reference_order(quiz: Quiz, backups: list[str]) -> list[str]:
    """The 4.x layout in the order this worker writes it (spec 5.2, sidecar after each file)."""
    names: list[str] = []
    for attempt in quiz.attempts:
        folder = f"attempts/{quiz.users[attempt.userid].username}/{attempt.id}"
        names += [f"{folder}/attempt-{attempt.id}.pdf", f"{folder}/attempt-{attempt.id}.html"]
        names += [f"{folder}/attachments/{a.slot}/{a.filename}" for a in attempt.attachments]
    names += ["attempts_metadata.csv", *(f"backups/{b}" for b in backups)]
    return [n for name in names for n in (name, f"{name}.sha256")]


def test_defaults_keep_the_4x_layout_byte_for_byte(moodle: FakeMoodle, tmp_path: Path) -> None:
    quiz = moodle.create_quiz(attempts=2, attachments_per_attempt=2, with_formulas=False)
    default = run_fake_job(moodle, _job(moodle, quiz), fast_settings(tmp_path / "a"))
    explicit = run_fake_job(moodle, _job(moodle, quiz, archive_flatten=False,
                                         archive_filehashes=True), fast_settings(tmp_path / "b"))
    assert default.outcome.phase is explicit.outcome.phase is Phase.SUCCEEDED
    backups = [b["filename"] for b in default.job.request_body["task_moodle_backups"]]
    with default.archive() as zf:
        members = _members(zf)
        assert [name for name, _ in members] == reference_order(quiz, backups)
        for name in zf.namelist():
            if not name.endswith(".sha256"):
                digest = hashlib.sha256(zf.read(name)).hexdigest().encode()
                assert zf.read(f"{name}.sha256") == digest
    with explicit.archive() as zf:
        other = _members(zf)
    # Same members, same order, same bytes except what differs between any two jobs (the
    # backups' names carry their time; PDFs and the report HTML are made anew per job).
    assert len(other) == len(members)
    for (a, da), (b, db) in zip(members, other, strict=True):
        assert a.split("backup-")[0] == b.split("backup-")[0]
        if not any(part in a for part in ("backup", ".pdf", ".html")):
            assert da == db, a


@pytest.mark.parametrize("source", ["request", "settings"])
def test_flat_archive_without_sidecars(moodle: FakeMoodle, tmp_path: Path, source: str) -> None:
    quiz = moodle.create_quiz(attempts=2, attachments_per_attempt=2, with_formulas=False)
    if source == "request":  # worker 5.0's request keys
        job, settings = _job(moodle, quiz, archive_flatten=True, archive_filehashes=False), {}
    else:  # the runner's settings, for plugins that do not send them
        job, settings = _job(moodle, quiz), {"archive_flatten": True, "archive_filehashes": False}
    result = run_fake_job(moodle, job, fast_settings(tmp_path, **settings))
    assert result.outcome.phase is Phase.SUCCEEDED, result.outcome.message
    (backup,) = [b["filename"] for b in job.request_body["task_moodle_backups"]]
    expected = {"attempts_metadata.csv", f"backup.{backup}"}
    for attempt in quiz.attempts:
        expected |= {f"attempt_{attempt.id}.attempt-{attempt.id}.pdf",
                     f"attempt_{attempt.id}.attempt-{attempt.id}.html"}  # fmt: skip
        expected |= {f"attempt_{attempt.id}.attempt-{attempt.id}.attachment.{a.slot}.{a.filename}"
                     for a in attempt.attachments}  # fmt: skip
    with result.archive() as zf:
        assert set(zf.namelist()) == expected
        for attempt in quiz.attempts:
            for a in attempt.attachments:
                name = f"attempt_{attempt.id}.attempt-{attempt.id}.attachment.{a.slot}.{a.filename}"
                assert zf.read(name) == a.content
        rows = zf.read("attempts_metadata.csv").decode().splitlines()[1:]
    paths = sorted(row.rsplit(",", 1)[1].strip('"') for row in rows)
    assert paths == sorted(f"attempt_{a.id}.attempt-{a.id}" for a in quiz.attempts)

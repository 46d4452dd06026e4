"""One task from a plugin request body to an archive stored in the fake Moodle, with real Chromium.

The expected archive is derived from the fake Moodle's own data (users, attempts,
attachments) and the naming patterns of the request, not from the runner's code.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from moodle_archive_job.progress import Phase
from tests.browser.pdfs import pdf_text
from tests.fakemoodle import FakeMoodle, Quiz
from tests.runner.conftest import RunResult, fast_settings, run_fake_job

pytestmark = pytest.mark.browser

FOLDER_PATTERN = "${username}/${attemptid}"
FILE_PATTERN = "attempt-${attemptid}"
WORKER_STATUSES = {"RUNNING", "WAITING_FOR_BACKUP", "FINALIZING", "FAILED", "TIMEOUT"}


def expected_files(quiz: Quiz, backups: list[str], html: bool, sep: str = "/") -> set[str]:
    files: set[str] = {"attempts_metadata.csv"}
    for attempt in quiz.attempts:
        user = quiz.users[attempt.userid]
        folder = f"attempts/{user.username}{sep}{attempt.id}"
        files.add(f"{folder}/attempt-{attempt.id}.pdf")
        if html:
            files.add(f"{folder}/attempt-{attempt.id}.html")
        for att in attempt.attachments:
            files.add(f"{folder}/attachments/{att.slot}/{att.filename}")
    files.update(f"backups/{name}" for name in backups)
    return files | {f"{name}.sha256" for name in files}


def expected_csv(quiz: Quiz, sep: str = "/") -> bytes:
    lines = ['"attemptid","userid","username","firstname","lastname","idnumber","timestart",'
             '"timefinish","attempt","state","path"']
    for a in quiz.attempts:
        u = quiz.users[a.userid]
        lines.append(
            f'{a.id},{u.id},"{u.username}","{u.firstname}","{u.lastname}","{u.idnumber}",'
            f'{a.timestart},{a.timefinish},{a.attempt},"{a.state}",'
            f'"attempts/{u.username}{sep}{a.id}/attempt-{a.id}"'
        )
    return ("\r\n".join(lines) + "\r\n").encode()


def check_sidecars(zf: zipfile.ZipFile) -> None:
    names = zf.namelist()
    assert len(names) == len(set(names))
    assert not [n for n in names if n.endswith("/") or n.startswith("/") or ".." in n]
    for name in names:
        if name.endswith(".sha256"):
            continue
        assert zf.read(name + ".sha256").decode() == hashlib.sha256(zf.read(name)).hexdigest()


def check_attempt_files(zf: zipfile.ZipFile, quiz: Quiz, scratch: Path) -> None:
    """Each attempt's PDF has its text and typeset formulas; attachments are Moodle's bytes."""
    for attempt in quiz.attempts:
        user = quiz.users[attempt.userid]
        folder = f"attempts/{user.username}/{attempt.id}"
        pdf = scratch / f"{attempt.id}.pdf"
        pdf.write_bytes(zf.read(f"{folder}/attempt-{attempt.id}.pdf"))
        text = pdf_text(pdf)
        assert attempt.answer_word in text and user.fullname in text
        assert "\\frac" not in text and "$$" not in text, "formulas were not typeset"
        for att in attempt.attachments:
            assert zf.read(f"{folder}/attachments/{att.slot}/{att.filename}") == att.content


def worker_sent_statuses(moodle: FakeMoodle, result: RunResult, function: str) -> list[str]:
    return [str(c.params.get("status")) for c in moodle.calls_for(result.jobid)
            if c.wsfunction == function]


def test_quiz_archiver_job_produces_the_reference_archive(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    quiz = moodle.create_quiz(attempts=3, attachments_per_attempt=1, with_formulas=True)
    job = moodle.create_job(quiz, keep_html_files=True, backups=("quiz", "course"),
                            foldername_pattern=FOLDER_PATTERN, filename_pattern=FILE_PATTERN)
    backup_names = [b["filename"] for b in job.request_body["task_moodle_backups"]]

    result = run_fake_job(moodle, job, fast_settings(tmp_path))

    assert result.outcome.phase is Phase.SUCCEEDED, result.outcome.message
    assert job.status == "FINISHED" and not job.token_valid
    with result.archive() as zf:
        assert set(zf.namelist()) == expected_files(quiz, backup_names, html=True)
        check_sidecars(zf)
        assert zf.read("attempts_metadata.csv") == expected_csv(quiz)
        check_attempt_files(zf, quiz, tmp_path)
        stored_backups = {b.filename: b.content for b in moodle.site.backups.values()}
        for name in backup_names:
            assert zf.read(f"backups/{name}") == stored_backups[name]
    # The archive Moodle stored is the one whose checksum the worker reported.
    assert result.outcome.artifact is not None
    assert hashlib.sha256(job.artifact or b"").hexdigest() == result.outcome.artifact.sha256

    # Spec 4.1: RUNNING(0) -> reports -> metadata -> backups -> FINALIZING -> upload -> process.
    calls = [c for c in moodle.calls_for(result.jobid) if c.endpoint in ("rest", "upload")]
    order = [c.wsfunction or c.endpoint for c in calls]
    assert order[0] == "quiz_archiver_update_job_status"
    assert calls[0].params.get("status") == "RUNNING"
    reports = [i for i, f in enumerate(order) if f == "quiz_archiver_generate_attempt_report"]
    metadata = order.index("quiz_archiver_get_attempts_metadata")
    backups = [i for i, f in enumerate(order) if f == "quiz_archiver_get_backup_status"]
    finalizing = [i for i, c in enumerate(calls) if c.params.get("status") == "FINALIZING"]
    assert len(reports) == 3 and len(backups) == 2 and len(finalizing) == 1
    assert max(reports) < metadata < min(backups) < finalizing[0]
    assert order[-2:] == ["upload", "quiz_archiver_process_uploaded_artifact"]
    assert finalizing[0] == len(order) - 3
    sent = worker_sent_statuses(moodle, result, "quiz_archiver_update_job_status")
    assert set(sent) <= WORKER_STATUSES and "FINISHED" not in sent
    assert {c.params["attemptid"] for c in calls if (c.wsfunction or "").endswith("report")} == {
        str(a) for a in quiz.attemptids}
    # Progress rose and reached Moodle as statusextras.
    progress = [e.progress for e in result.sink.events if e.phase is Phase.RUNNING]
    assert progress == sorted(progress) and progress[-1] == 100
    extras = [x for s, x in job.statusextras_history if s == "RUNNING" and x]
    assert extras[0] == {"progress": 0} and len(extras) >= 2


def test_archivingmod_quiz_task_uses_its_own_functions(moodle: FakeMoodle, tmp_path: Path) -> None:
    quiz = moodle.create_quiz(attempts=2, attachments_per_attempt=1, with_formulas=False)
    # The driver sanitises folder names like file names (no `/`), so use a flat pattern.
    job = moodle.create_job(quiz, protocol="archivingmod_quiz",
                            foldername_pattern="${username}-${attemptid}",
                            filename_pattern=FILE_PATTERN)

    result = run_fake_job(moodle, job, fast_settings(tmp_path))

    assert result.outcome.phase is Phase.SUCCEEDED, result.outcome.message
    assert job.status_name == "FINISHED"
    with result.archive() as zf:
        assert set(zf.namelist()) == expected_files(quiz, [], html=False, sep="-")
        check_sidecars(zf)
        assert zf.read("attempts_metadata.csv") == expected_csv(quiz, sep="-")
    functions = [c.wsfunction for c in moodle.calls_for(result.jobid) if c.endpoint == "rest"]
    assert all(f.startswith("archivingmod_quiz_") for f in functions)
    assert functions[0] == "archivingmod_quiz_update_task_status"
    assert functions[-1] == "archivingmod_quiz_process_uploaded_artifact"
    sent = worker_sent_statuses(moodle, result, "archivingmod_quiz_update_task_status")
    assert sent[0] == "100" and "200" in sent and "220" not in sent


def test_output_does_not_depend_on_concurrency(tmp_path: Path) -> None:
    contents: list[dict[str, bytes]] = []
    for concurrency in (1, 4):
        with FakeMoodle(report_latency=0.05) as moodle:
            users = [{"username": "same", "firstname": "Sam", "lastname": "E"}]
            quiz = moodle.create_quiz(attempts=5, users=users * 5, with_formulas=False)
            # A static pattern: every attempt asks for the same folder (spec 5.2 collisions).
            job = moodle.create_job(quiz, foldername_pattern="${username}",
                                    filename_pattern="attempt", keep_html_files=True)
            result = run_fake_job(moodle, job, fast_settings(tmp_path,
                                                             attempt_concurrency=concurrency))
            assert result.outcome.phase is Phase.SUCCEEDED, result.outcome.message
            with result.archive() as zf:
                names = zf.namelist()
                contents.append({n: zf.read(n) for n in names if not n.endswith(".pdf")
                                 and not n.endswith(".pdf.sha256")})
                ids = quiz.attemptids
                folders = [n.rsplit("/", 1)[0] for n in names if n.endswith("attempt.html")]
                assert folders == ["attempts/same"] + [f"attempts/same_{i}" for i in ids[1:]]
    assert list(contents[0]) == list(contents[1])
    assert contents[0].keys() == contents[1].keys()


def test_pdfa_and_image_optimisation_in_the_archive(moodle: FakeMoodle, tmp_path: Path) -> None:
    import re

    from pypdf import PdfReader

    quiz = moodle.create_quiz(attempts=2, with_formulas=True)
    job = moodle.create_job(quiz, image_optimize={"width": 64, "height": 64, "quality": 50})
    result = run_fake_job(moodle, job, fast_settings(tmp_path, pdfa_conversion=True))
    assert result.outcome.phase is Phase.SUCCEEDED, result.outcome.message
    with result.archive() as zf:
        pdfs = [n for n in zf.namelist() if n.endswith(".pdf")]
        assert len(pdfs) == 2
        for name in pdfs:
            path = tmp_path / "check.pdf"
            path.write_bytes(zf.read(name))
            reader = PdfReader(path)
            xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data()
            assert re.search(rb"pdfaid:part(>|=[\"'])3", xmp), name
            assert re.search(rb"pdfaid:conformance(>|=[\"'])B", xmp), name
            assert "/OutputIntents" in reader.trailer["/Root"]
            for page in reader.pages:
                for image in page.images:
                    assert image.image is not None
                    width, height = image.image.size
                    assert width <= 64 and height <= 64, (name, image.name, width, height)
            assert attempt_words(quiz) & set(pdf_text(path).split())


def attempt_words(quiz: Quiz) -> set[str]:
    return {a.answer_word for a in quiz.attempts}

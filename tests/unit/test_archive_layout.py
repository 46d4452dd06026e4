"""Archive layouts: worker 4.x's nested one (unchanged) and worker 5.0's flat one."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from moodle_archive_job.archive_layout import ArchiveLayout, ArchiveOptions
from moodle_archive_job.archive_writer import ArchiveWriter
from moodle_archive_job.settings import RunnerSettings
from moodle_archive_job.task import ArchiveStructure
from tests.unit.request_bodies import minimal_task

FILES = ("r-7.pdf", "r-7.html", "attachments/5/notes.txt", "attachments/12/a b.png")


def test_nested_layout_is_the_reference_one_with_folder_collisions() -> None:
    layout = ArchiveLayout()
    first = layout.attempt(7, "jdoe/7", "r-7")
    assert [first.member(n) for n in FILES] == [
        "attempts/jdoe/7/r-7.pdf", "attempts/jdoe/7/r-7.html",
        "attempts/jdoe/7/attachments/5/notes.txt", "attempts/jdoe/7/attachments/12/a b.png",
    ]  # fmt: skip
    assert first.prefix == "attempts/jdoe/7/r-7"
    # A second attempt with the same folder name gets the reference suffix (spec 5.2).
    assert layout.attempt(9, "jdoe/7", "r-9").prefix == "attempts/jdoe/7_9/r-9"
    assert layout.backup("quiz.mbz") == "backups/quiz.mbz"


def test_flat_layout_is_worker_5s() -> None:
    layout = ArchiveLayout(ArchiveStructure.FLAT)
    place = layout.attempt(7, "jdoe/7", "r-7")
    assert [place.member(n) for n in FILES] == [
        "attempt_7.r-7.pdf", "attempt_7.r-7.html",
        "attempt_7.r-7.attachment.5.notes.txt", "attempt_7.r-7.attachment.12.a b.png",
    ]  # fmt: skip
    assert place.prefix == "attempt_7.r-7"  # the CSV path: a prefix of all its files
    assert all(place.member(n).startswith(place.prefix) for n in FILES)
    assert layout.attempt(9, "jdoe/7", "r-7").prefix == "attempt_9.r-7"  # no collisions
    assert layout.backup("quiz.mbz") == "backup.quiz.mbz"




@pytest.mark.parametrize(
    ("task_options", "settings", "expected"),
    [
        ({}, {}, (ArchiveStructure.NESTED, True)),
        ({}, {"archive_flatten": True, "archive_filehashes": False},
         (ArchiveStructure.FLAT, False)),
        ({"archive_structure": "nested", "checksum_sidecars": True},
         {"archive_flatten": True, "archive_filehashes": False}, (ArchiveStructure.NESTED, True)),
        ({"archive_structure": "flat"}, {}, (ArchiveStructure.FLAT, True)),
        ({"checksum_sidecars": False}, {}, (ArchiveStructure.NESTED, False)),
    ],
)  # fmt: skip
def test_the_request_wins_over_the_runner_settings(
    task_options: dict[str, object], settings: dict[str, object], expected: tuple[object, bool]
) -> None:
    task = minimal_task(**task_options)
    options = ArchiveOptions.for_task(task, RunnerSettings(**settings))
    assert (options.structure, options.sidecars) == expected


def test_writer_without_sidecars(tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"hello")
    for sidecars, names in ((True, ["a.txt", "a.txt.sha256", "b.csv", "b.csv.sha256"]),
                            (False, ["a.txt", "b.csv"])):  # fmt: skip
        path = tmp_path / f"{sidecars}.zip"
        writer = ArchiveWriter(path, sidecars=sidecars)
        writer.add_file("a.txt", source)
        writer.add_bytes("b.csv", b"x")
        writer.close()
        assert zipfile.ZipFile(path).namelist() == names

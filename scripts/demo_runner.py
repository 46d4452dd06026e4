"""`make demo` (runner stage): archive a quiz of a fake Moodle with the real job runner.

Starts the fake Moodle, creates a quiz with a few attempts (formulas and an
attachment each) and a quiz_archiver job with a quiz backup, runs
`moodle-archiver run-job` exactly as a job pod would get it, and shows the archive
that Moodle stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakemoodle import FakeMoodle  # noqa: E402


def main() -> int:
    out = Path(os.environ.get("DEMO_OUT", REPO / "out" / "demo")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with FakeMoodle(report_latency=0.2) as moodle:
        print(f"fake Moodle at {moodle.base_url}")
        quiz = moodle.create_quiz(attempts=5, with_formulas=True, attachments_per_attempt=1)
        job = moodle.create_job(quiz, backups=("quiz",), keep_html_files=True)
        jobid = str(uuid.uuid4())
        moodle.register_job(job, jobid)
        request = out / "request.json"
        body = {**job.request_body, "wstoken": "<redacted>"}
        request.write_text(json.dumps(job.request_body))
        print(f"quiz {quiz.quizid}: {len(quiz.attemptids)} attempts; job {jobid}")
        print(f"plugin request body: {request} (token redacted here: "
              f"{json.dumps(body)[:120]}...)")
        done = subprocess.run(
            [str(REPO / ".venv" / "bin" / "moodle-archiver"), "run-job",
             "--request", str(request), "--job-id", jobid],
            check=False,
        )
        request.unlink()  # it holds the token
        state = moodle.job(jobid)
        print(f"runner exit code {done.returncode}; Moodle job status: {state.status_name}")
        if state.artifact is None:
            print("Moodle stored no archive", file=sys.stderr)
            return 1
        archive = out / (job.request_body["archive_filename"] + ".zip")
        archive.write_bytes(state.artifact)
        with zipfile.ZipFile(archive) as zf:
            print(f"\narchive stored by Moodle, copied to {archive}:")
            for info in zf.infolist():
                print(f"  {info.file_size:>9}  {info.filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

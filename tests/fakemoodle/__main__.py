"""Run the fake Moodle as a program.

    python -m tests.fakemoodle --port 8085 --quiz-attempts 5 [--protocol quiz_archiver]
        [--backups quiz,course] [--mathjax 3] [--body-file job.json] [--worker-url URL]

Prints the base URL and the plugin's request body for one created job (to ``--body-file`` and
stdout). With ``--worker-url`` it also submits the job like the plugin does; otherwise the job
row is inserted as soon as a worker first calls with the job's token and a job id (nobody else
could tell this Moodle the worker's job id). Runs until Ctrl-C or SIGTERM; ``--jobs-file``
receives a JSON summary of all jobs on exit.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .server import FakeMoodle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakemoodle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--public-url", default=None)
    parser.add_argument("--quiz-attempts", type=int, default=3)
    parser.add_argument("--attachments", type=int, default=0, help="attachments per attempt")
    parser.add_argument(
        "--protocol", choices=("quiz_archiver", "archivingmod_quiz"), default="quiz_archiver"
    )
    parser.add_argument("--backups", default="", help="comma list of quiz,course")
    parser.add_argument("--backup-ready-after", type=float, default=0.0)
    parser.add_argument("--mathjax", type=int, choices=(0, 2, 3, 4), default=3)
    parser.add_argument("--no-formulas", action="store_true")
    parser.add_argument("--report-latency", type=float, default=0.0)
    parser.add_argument("--timeout-min", type=int, default=60)
    parser.add_argument("--keep-html", action="store_true")
    parser.add_argument("--no-job", action="store_true", help="only create the quiz")
    parser.add_argument("--body-file", type=Path, default=None)
    parser.add_argument("--jobs-file", type=Path, default=None)
    parser.add_argument("--worker-url", default=None, help="submit the job to this worker")
    parser.add_argument(
        "--no-auto-register",
        action="store_true",
        help="never insert the job row unless --worker-url is used",
    )
    args = parser.parse_args(argv)

    moodle = FakeMoodle(
        report_latency=args.report_latency,
        mathjax_version=args.mathjax or None,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
    )
    moodle.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(f"fake Moodle listening on {moodle.base_url}", flush=True)
        quiz = moodle.create_quiz(
            attempts=args.quiz_attempts,
            with_formulas=not args.no_formulas,
            attachments_per_attempt=args.attachments,
        )
        print(
            f"quiz: courseid={quiz.courseid} cmid={quiz.cmid} quizid={quiz.quizid} "
            f"attempts={quiz.attemptids}",
            flush=True,
        )
        if not args.no_job:
            backups = tuple(b for b in args.backups.split(",") if b)
            job = moodle.create_job(
                quiz,
                protocol=args.protocol,
                backups=backups,
                backup_ready_after=args.backup_ready_after,
                keep_html_files=args.keep_html,
                timeout_min=args.timeout_min,
                auto_register_after=None if args.no_auto_register or args.worker_url else 0.0,
            )
            body = json.dumps(job.request_body, indent=2)
            if args.body_file:
                args.body_file.write_text(body + "\n")
                print(
                    f"request body written to {args.body_file} "
                    f"(POST it to <worker>{job.endpoint_path})",
                    flush=True,
                )
            print(body, flush=True)
            if args.worker_url:
                result = moodle.submit_job(job, args.worker_url)
                print(
                    f"submit: ok={result.ok} http={result.http_status} "
                    f"{result.message} {result.data}",
                    flush=True,
                )
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        if args.jobs_file:
            summary = [
                {
                    "jobid": j.jobid,
                    "taskid": j.taskid,
                    "protocol": j.protocol,
                    "status": j.status_name,
                    "history": j.statusextras_history,
                    "artifact": str(j.artifact_path) if j.artifact_path else None,
                }
                for j in moodle.jobs
            ]
            args.jobs_file.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        moodle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`moodle-archiver`: one command for the job runner, the gateway and the operator."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import uuid
from pathlib import Path

from pydantic import SecretStr, ValidationError

from .archivejob_status import ArchiveJobStatusSink, sink_from_env
from .logs import configure_logging, register_secret
from .moodle_api import JobStatus, api_for
from .moodle_client import MoodleClient
from .pipeline import JobContext, JobOutcome, run_job
from .progress import FanOut, LogSink, Phase, ProgressSink, TerminalSink
from .request_parsing import RequestRejected, detect_protocol, parse_archive_request
from .setting_names import SettingsNameError
from .settings import RunnerSettings
from .shards import ShardPlan
from .task import ArchiveTask
from .termination import write_termination_message
from .version import VERSION

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_TIMEOUT = 3
EXIT_TERMINATED = 128 + signal.SIGTERM


class InputError(Exception):
    pass


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moodle-archiver", description="Moodle quiz archive worker for Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run-job",
        help="run one archive task",
        description="Run one archive task and hand the archive to Moodle. Exit codes: "
        "0 Moodle accepted the archive, 1 the job failed (Moodle was told FAILED), "
        "2 invalid input, 3 runtime limit reached (Moodle was told TIMEOUT).",
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--request", type=Path,
                        help="a plugin request body (quiz_archiver v7 or archivingmod_quiz v1)")
    source.add_argument("--task", type=Path,
                        help="a normalised task (JSON of ArchiveTask), as mounted into job pods")
    run.add_argument("--token-file", type=Path,
                     help="file holding the Moodle token (required with --task)")
    run.add_argument("--job-id", required=True,
                     help="the job id the worker returned to Moodle (a UUID)")
    run.add_argument("--keep-archive", type=Path, help="also keep a copy of the ZIP here")
    run.add_argument("--log-format", choices=("auto", "json", "text"), default="auto")
    run.add_argument("--shards", type=int, default=1,
                     help="run the job as this many shard processes over one work directory")
    run.add_argument("--shard-index", type=int, default=None,
                     help="this process's shard (default: $JOB_COMPLETION_INDEX, else 0); "
                     "shard I renders attempts I, I+N, ...; shard 0 also finishes the job")

    sub.add_parser("gateway", help="serve the HTTP endpoint Moodle posts tasks to",
                   add_help=False)
    sub.add_parser("operator", help="run the Kopf operator", add_help=False)
    return parser


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None


def load_task(args: argparse.Namespace) -> tuple[ArchiveTask, SecretStr]:
    if args.request is not None:
        payload = _load_json(args.request)
        try:
            parsed = parse_archive_request(payload, detect_protocol(payload))
        except RequestRejected as exc:
            raise InputError(f"the request is invalid: {exc.message}") from None
        return parsed.task, parsed.token
    if args.token_file is None:
        raise InputError("--task needs --token-file")
    try:
        task = ArchiveTask.model_validate(_load_json(args.task))
    except ValidationError as exc:
        raise InputError(f"{args.task} is not a valid task: {exc.errors()[0]['msg']}") from None
    try:
        token = args.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"cannot read the token file: {exc.strerror}") from None
    if not token:
        raise InputError("the token file is empty")
    return task, SecretStr(token)


def _check_job_id(job_id: str) -> str:
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise InputError(f"--job-id must be a UUID, got {job_id!r}") from None


def _shard_plan(args: argparse.Namespace) -> ShardPlan:
    try:
        return ShardPlan.from_args(args.shards, args.shard_index)
    except ValueError as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise InputError(f"invalid shards: {reason}") from None


def run_job_command(args: argparse.Namespace, extra_sinks: tuple[ProgressSink, ...] = ()) -> int:
    try:
        settings = RunnerSettings()
    except (ValidationError, SettingsNameError) as exc:
        _fail(f"invalid settings: {exc}")
        return EXIT_INVALID_INPUT
    json_lines = {"auto": None, "json": True, "text": False}[args.log_format]
    interactive = sys.stderr.isatty() if json_lines is None else not json_lines
    configure_logging(settings.log_level if not interactive else "WARNING",
                      json_lines=not interactive)
    try:
        job_id = _check_job_id(args.job_id)
        shards = _shard_plan(args)
        task, token = load_task(args)
    except InputError as exc:
        _fail(str(exc))
        return EXIT_INVALID_INPUT
    register_secret(token.get_secret_value())
    status_sink = sink_from_env()  # the pod's own ArchiveJob status, when run for one
    if status_sink is not None:
        extra_sinks = (*extra_sinks, status_sink)
    sink = FanOut(TerminalSink() if interactive else LogSink(), *extra_sinks)
    try:
        outcome = asyncio.run(_stoppable(JobContext(
            task=task, token=token, job_id=job_id, settings=settings, sink=sink,
            keep_archive=args.keep_archive, shards=shards,
        )))
        if outcome is None:
            return _terminated(task, token, job_id, status_sink)
    finally:
        if status_sink is not None:
            status_sink.close()
    if outcome.phase is Phase.SUCCEEDED:
        print(outcome.message, file=sys.stderr if not interactive else sys.stdout)
        write_termination_message(outcome.message)
        return EXIT_OK
    _fail(f"{outcome.phase}: {outcome.message}")
    return EXIT_TIMEOUT if outcome.phase is Phase.TIMED_OUT else EXIT_FAILED


def _fail(message: str) -> None:
    """The last line on stderr, and the pod's termination message."""
    print(f"moodle-archiver: {message}", file=sys.stderr)
    write_termination_message(message)


async def _stoppable(ctx: JobContext) -> JobOutcome | None:
    """run_job, or None if SIGTERM stopped it (the pod is being deleted)."""
    current = asyncio.current_task()
    assert current is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
    try:
        return await run_job(ctx)
    except asyncio.CancelledError:
        return None


def _terminated(
    task: ArchiveTask, token: SecretStr, job_id: str, status_sink: ArchiveJobStatusSink | None
) -> int:
    """Stopped by SIGTERM. If the ArchiveJob is gone (deleted), nobody else holds the token
    any more: tell Moodle FAILED. If it still exists (eviction, deadline), another pod or the
    operator carries on and Moodle is not told here."""
    if status_sink is None or status_sink.archivejob_exists() is False:
        client = MoodleClient(task.moodle, token, retries=1, connect_timeout=5, read_timeout=10)
        try:
            answer = api_for(task, client, job_id).update_status(JobStatus.FAILED)
        finally:
            client.close()
        _fail(f"stopped; Moodle told FAILED ({answer})")
    else:
        _fail("stopped")
    return EXIT_TERMINATED


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("gateway", "operator"):
        return _control_plane(argv[0], argv[1:])
    args = _build_parser().parse_args(argv)
    return run_job_command(args)


def _control_plane(command: str, argv: list[str]) -> int:
    try:
        if command == "gateway":
            from moodle_archive_operator.gateway.__main__ import run_gateway

            return run_gateway(argv)
        from moodle_archive_operator.operator_main import run_operator

        return run_operator(argv)
    except ImportError as exc:
        print(f"moodle-archiver: {command} is not available: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT


if __name__ == "__main__":
    sys.exit(main())

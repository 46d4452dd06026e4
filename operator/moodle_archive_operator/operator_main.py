"""`moodle-archiver operator`: run the Kopf operator for the jobs namespace until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from pydantic import ValidationError

from moodle_archive_job.logs import configure_logging
from moodle_archive_job.setting_names import SettingsNameError

log = logging.getLogger("moodle_archive_operator.operator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moodle-archiver operator",
        description="Turn each ArchiveJob of the jobs namespace into an isolated Job pod. "
        "Settings come from the environment (MAO_*).",
    )
    parser.add_argument(
        "--namespace", help="jobs namespace (default: MAO_JOBS_NAMESPACE)"
    )
    parser.add_argument("--liveness", help="liveness endpoint URL, or 'none' "
                        "(default: MAO_LIVENESS_ENDPOINT)")  # fmt: skip
    parser.add_argument("--metrics-port", type=int, help="0 disables /metrics "
                        "(default: MAO_METRICS_PORT)")  # fmt: skip
    parser.add_argument("--log-level", help="default: MAO_LOG_LEVEL")
    parser.add_argument("--log-format", choices=("json", "text", "auto"), default="json")
    return parser


def run_operator(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, object] = {}
    if args.namespace:
        overrides["jobs_namespace"] = args.namespace
    if args.liveness:
        overrides["liveness_endpoint"] = None if args.liveness == "none" else args.liveness
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    if args.log_level:
        overrides["log_level"] = args.log_level
    from .controller.settings import OperatorSettings

    try:
        settings = OperatorSettings(**overrides)  # type: ignore[arg-type]
    except (ValidationError, SettingsNameError) as exc:
        print(f"moodle-archiver operator: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    json_lines = {"json": True, "text": False, "auto": None}[args.log_format]
    configure_logging(settings.log_level, json_lines=json_lines)
    # Kopf reports every handled watch event per object at INFO: keep that out of the log.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, logging.getLogger().level))

    import kopf

    from .controller import handlers  # noqa: F401 - registers the handlers
    from .controller.runtime import Runtime

    runtime = Runtime(settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            kopf.operator(
                standalone=True,
                clusterwide=False,
                namespaces=[settings.jobs_namespace],
                liveness_endpoint=settings.liveness_endpoint,
                memo=kopf.Memo(runtime=runtime),
            )
        )
    return 0

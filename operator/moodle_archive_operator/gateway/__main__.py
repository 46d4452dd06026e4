"""`moodle-archiver gateway` (and `python -m moodle_archive_operator.gateway`)."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from moodle_archive_job.logs import configure_logging, register_secret
from moodle_archive_job.setting_names import SettingsNameError

from .settings import GatewayMisconfigured, GatewaySettings

log = logging.getLogger("moodle_archive_operator.gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moodle-archiver gateway",
        description="Serve the archive worker API for Moodle; each task becomes an ArchiveJob. "
        "Settings come from the environment (MAO_*).",
    )
    parser.add_argument("--host", help="bind address (default: MAO_GATEWAY_HOST)")
    parser.add_argument("--port", type=int, help="port (default: MAO_GATEWAY_PORT)")
    parser.add_argument("--log-level", help="log level (default: MAO_LOG_LEVEL)")
    parser.add_argument(
        "--log-format",
        choices=("json", "text", "auto"),
        default="json",
        help="json lines (default), text, or auto (text on a terminal)",
    )
    return parser


def run_gateway(argv: list[str] | None = None) -> int:
    """Run the gateway until stopped; returns the process exit code."""
    args = _parser().parse_args(argv)
    overrides = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("log_level", args.log_level))
        if v is not None
    }
    try:
        settings = GatewaySettings(**overrides)
    except (ValidationError, SettingsNameError) as exc:
        print(f"moodle-archiver gateway: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    json_lines = {"json": True, "text": False, "auto": None}[args.log_format]
    configure_logging(settings.log_level, json_lines=json_lines)
    if settings.path_prefix:
        # Access logs would print the secret prefix: mask it like a token.
        register_secret(settings.path_prefix.strip("/"))
    try:
        settings.ensure_moodle_policy()
    except GatewayMisconfigured as exc:
        log.critical("%s", exc)
        print(f"moodle-archiver gateway: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from .app import create_app

    if settings.allowed_moodle_urls:
        sites = ", ".join(str(s) for s in settings.allowed_moodle_urls)
        log.info("serving Moodle sites: %s", sites)
    else:
        log.warning(
            "MAO_ALLOW_ANY_MOODLE=true: accepting tasks from any Moodle site%s",
            "" if settings.allow_private_moodle_hosts else " (public addresses only)",
        )
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        server_header=False,
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_gateway(sys.argv[1:]))

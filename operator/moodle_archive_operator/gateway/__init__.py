"""The gateway: the HTTP endpoint Moodle posts archive tasks to; each becomes an ArchiveJob."""

from .app import create_app
from .settings import GatewayMisconfigured, GatewaySettings

__all__ = ["GatewayMisconfigured", "GatewaySettings", "create_app"]

"""Shared pytest configuration. Fixture plugins of each tier are listed here."""

pytest_plugins: list[str] = ["tests.support.cluster_fixtures"]

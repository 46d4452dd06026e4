"""The control plane: the gateway (HTTP API for Moodle) and the Kopf operator."""

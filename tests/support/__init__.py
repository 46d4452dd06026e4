"""Test support code: the local Kubernetes control plane and its pytest fixtures."""

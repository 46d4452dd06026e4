"""The job runner: one archive task, run inside one Kubernetes job pod."""

"""The Kopf operator: each ArchiveJob becomes an isolated, least-privileged Job pod.

Pure parts (settings, names, builders, observation, status decisions, queue and
housekeeping plans) are apart from the parts that talk to the API server
(kube, reconciler, admission, housekeeping) and from the Kopf handlers.
"""

"""Prefect flows that keep the memory healthy; each is a deployment in ``prefect.yaml``."""

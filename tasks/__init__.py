"""Prefect tasks: thin wrappers around ``stellar_core`` calls, retried on transient errors."""

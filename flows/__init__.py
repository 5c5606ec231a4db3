"""Prefect flows composed of the tasks in ``tasks``: they read like the runbook."""

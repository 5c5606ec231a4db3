"""The ``affectflow`` command: one entry point over the core stages and the Prefect flows.

It sits above ``flows/`` (it runs them), so it lives outside the ``affectflow`` core, which never
imports the orchestration layer.
"""

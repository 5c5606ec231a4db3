"""Prefect tasks: thin wrappers over the ``affectflow`` core, named by what they produce."""

"""Errors a person can act on: a bad option value, an unknown dataset, a file that is missing or unusable.

The command line prints a ``UserError`` as one line (``error: ...``) and exits with status 2; anything
else is a bug and keeps its traceback. Domain errors that a user causes derive from it.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what to do."""


class ConfigError(UserError, ValueError):
    """A configuration value (option, flow parameter, config file entry) out of its range."""

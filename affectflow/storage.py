"""Writing safely: whole files (``write_atomic``), one writer at a time (``file_lock``), and a disk that is full
or read-only recognised and said in one line.

A full disk is not a bad clip, nor a bug: every write fails until a person frees space. Work that meets it
stops with ``StorageError`` (a ``UserError``: the command line prints it as one line and exits 2) instead
of going on with what happened to fit. ``storage_cause`` finds the cause in an exception chain (an
``OSError`` errno, or the text SQLite and the libraries around it put in their own exceptions).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from affectflow.errors import UserError

# errno -> what a person reads
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "read-only file system", errno.EFBIG: "file too large for the file system"}
# What wrapped errors say when the errno is lost on the way (SQLite, ffmpeg, MLflow's exceptions).
STORAGE_TEXTS = {"no space left on device": "no space left on device", "[errno 28]": "no space left on device",
                 "database or disk is full": "no space left on device (SQLite: database or disk is full)",
                 "disk quota exceeded": "disk quota exceeded", "[errno 122]": "disk quota exceeded",
                 "read-only file system": "read-only file system", "[errno 30]": "read-only file system",
                 "attempt to write a readonly database": "read-only file system (SQLite: readonly database)"}
ADVICE = "free space (or make the home writable) and run the command again"


class StorageError(UserError):
    """The home's storage refused a write (full, over quota, read-only); nothing half-written was kept."""


def storage_text(text: str | None) -> str | None:
    """What ``text`` (an error message) says about storage, if it names a storage failure."""
    lowered = (text or "").lower()
    return next((meaning for needle, meaning in STORAGE_TEXTS.items() if needle in lowered), None)


def storage_cause(error: BaseException | None) -> str | None:
    """The storage failure behind ``error`` (its causes and contexts included), if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            where = f" ({error.filename})" if error.filename else ""
            return STORAGE_ERRNOS[error.errno] + where
        found = storage_text(str(error))
        if found:
            return found
        error = error.__cause__ or error.__context__
    return None


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``target`` whole or not at all: readers see the old file or the new one, never half of one (a
    temporary beside it, flushed to disk, then renamed over it). Its folder is made first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (made, with its folder, when missing) for the block. The lock is the
    kernel's (``flock``): processes on this machine take turns, and one that dies releases it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

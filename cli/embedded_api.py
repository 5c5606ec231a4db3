"""The first start of Prefect's temporary API in a home happens in one process at a time.

Without a Prefect server configured, every flow-running command starts a temporary API server over the home's
``$PREFECT_HOME/prefect.db``. Its first start creates that database (Prefect 3.8.8 runs over 100 Alembic
migrations) and registers Prefect's block types. Two commands starting together on a fresh home (two
``affectflow ingest`` run by hand, a cron job and a person) each migrate the same SQLite file. Measured with three
processes on a fresh home: in 5 of 5 trials a server died at start-up (``index ... already exists``, ``duplicate
column name``, ``table ... already exists``, ``no such index``; once ``Online migration expected to match one
row``). Prefect restarts a server that failed its start-up on another port until
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``, so a command recovered by luck or ended in a start-up
timeout (the issue also saw ``UNIQUE constraint failed``, which concurrent block registration can raise).

Prefect reads ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` once, when it is imported: the 120 s that
``activate_home`` puts in the environment reach child processes, not this one (it imported Prefect first and
would wait Prefect's 20 s, too short on a loaded machine: CI once failed on it). So this process's server is
always started here, with the timeout passed explicitly; Prefect's clients then find it running.

``start_embedded_api(paths)`` starts this process's temporary server now, under an exclusive lock on
``<home>/prefect/.startup.lock``, when the home's database has not been fully started once with this Prefect
version (a marker file says so); a process that waited finds it set up and starts its own. Later starts skip the lock:
migrating an up-to-date database and the memoised block registration only read, and concurrent starts are then
safe (0 of 5 trials failed). It costs nothing with a server configured. The server it starts is the one
Prefect's clients use (``SubprocessASGIServer`` keeps one instance per port), so the flow that follows finds it
running; a process waiting for the lock says so on stderr. ``cli.main`` calls it for every command that runs
a flow (``FLOW_COMMANDS``).
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from affectflow.config import Paths


def _marker(paths: Paths) -> Path:
    import prefect

    return paths.prefect_home / f".started-{prefect.__version__}"


def _database_url() -> str:
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    return str(PREFECT_API_DATABASE_CONNECTION_URL.value())


def _started_before(paths: Paths) -> bool:
    """The database this process would use was fully started once with this Prefect version."""
    marker, url = _marker(paths), _database_url()
    if not marker.is_file() or marker.read_text(encoding="utf-8") != url:
        return False
    if url.startswith("sqlite"):  # a deleted database file is a fresh start again
        return Path(url.split(":///", 1)[-1]).is_file()
    return True


def _startup_timeout() -> int:
    """Seconds to wait for the temporary server: the environment's value (``activate_home`` sets 120)."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    return int(os.environ.get(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.name,
                              PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))


def start_embedded_api(paths: Paths) -> bool:
    """Start this process's temporary Prefect API now, the first start of a home's database one process at a
    time; returns whether that first start happened here. No-op with a Prefect server configured
    (``PREFECT_API_URL``)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return False
    if _started_before(paths):
        SubprocessASGIServer().start(timeout=_startup_timeout())
        return False
    paths.prefect_home.mkdir(parents=True, exist_ok=True)
    with open(paths.prefect_home / ".startup.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another command to finish setting up Prefect's database in {paths.prefect_home}",
                  file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            first = not _started_before(paths)  # else set up by the process we waited for
            SubprocessASGIServer().start(timeout=_startup_timeout())
            if not first:
                return False
            marker = _marker(paths)
            temporary = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
            temporary.write_text(_database_url(), encoding="utf-8")
            os.replace(temporary, marker)
            return True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

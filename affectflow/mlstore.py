"""The home's MLflow sqlite store, set up atomically and repaired when a set-up was cut short.

MLflow builds a new sqlite store in place: it creates its tables, then runs some sixty schema migrations,
not in one transaction. A full disk or a kill in the middle leaves a file that every later MLflow call
refuses (seen: ``table _alembic_tmp_params already exists``, ``table mcp_servers already exists``) until
someone deletes it by hand. Here, before MLflow opens the home's store (``ensure_store``, from
``registry.configure``):

- a new store is built under a temporary name beside ``mlflow.db`` and renamed into place once complete:
  ``mlflow.db`` is either absent or whole; what a killed build leaves is a temporary file, removed next time;
- a store left half-built (by an earlier version, or MLflow run on the file directly) that holds no
  experiments, runs or models is set aside as ``mlflow.db.broken-<time>`` and built again;
- a store with data whose schema is older than this MLflow's is migrated on a copy (``mlflow db upgrade``),
  the copy renamed into place when done, after dropping the ``_alembic_tmp_*`` tables an interrupted
  migration left (each is a partial copy of a table that still exists). A migration that fails leaves the
  store as it was and says why.

All of it under an exclusive lock (``mlflow.db.lock``), so commands starting together on a new home build
it once. A store at MLflow's current schema costs one small query. Failures for lack of space are
``storage.StorageError`` (one line, nothing changed).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from affectflow.storage import ADVICE, StorageError, file_lock, storage_cause, storage_text

TEMP_INFIX = ".init-"
BROKEN_INFIX = ".broken-"
LEFTOVER_PREFIX = "_alembic_tmp_"
# Rows in these tables are someone's work: such a store is migrated on a copy, never set aside.
DATA_TABLES = ("runs", "registered_models", "model_versions", "logged_models", "trace_info")


class StoreError(RuntimeError):
    """The store needs repair that cannot be done safely by itself; the message says what to do."""


def head_revision() -> str:
    """The schema revision this MLflow writes (MLflow itself compares it on every start of a sqlite store)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _revision(db: sqlite3.Connection, tables: set[str]) -> str | None:
    if "alembic_version" not in tables:
        return None
    rows = db.execute("SELECT version_num FROM alembic_version").fetchall()
    return rows[0][0] if len(rows) == 1 else None


def _state(path: Path) -> tuple[set[str], str | None]:
    """The tables and the schema revision of the sqlite file at ``path``."""
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
        tables = _tables(db)
        return tables, _revision(db, tables)


def healthy(path: Path, head: str | None = None) -> bool:
    """``path`` is a store MLflow opens as it is: at the current schema, no leftovers of a migration."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        tables, revision = _state(path)
    except sqlite3.DatabaseError:
        return False
    return revision == (head or head_revision()) and not any(t.startswith(LEFTOVER_PREFIX) for t in tables)


def holds_data(path: Path) -> bool:
    """Whether the store at ``path`` holds anyone's work: a run, a model, a trace, or an experiment beyond
    MLflow's ``Default``."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as db:
            tables = _tables(db)
            if any(db.execute(f"SELECT 1 FROM {name} LIMIT 1").fetchone() for name in DATA_TABLES if name in tables):
                return True
            return "experiments" in tables and bool(
                db.execute("SELECT 1 FROM experiments WHERE name != 'Default' LIMIT 1").fetchone())
    except sqlite3.DatabaseError as err:
        if storage_text(str(err)):
            raise
        return False  # not a database at all: nothing in it can be read back


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with file_lock(path.with_name(path.name + ".lock")):
        yield


def _remove(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal"),
                     path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put_in_place(temp: Path, path: Path) -> None:
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def _forget_engine(uri: str) -> None:
    """Drop MLflow's cached engine of ``uri`` (the temporary store's, or one opened on a file now replaced)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = getattr(SqlAlchemyStore, "_engine_map", {}).pop(uri, None)
    if engine is not None:
        engine.dispose()


def _build(path: Path, artifacts: Path) -> None:
    """A new store at ``path``: built complete under a temporary name, then renamed into place."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    temp = path.with_name(f"{path.name}{TEMP_INFIX}{os.getpid()}.tmp")
    uri = f"sqlite:///{temp}"
    try:
        SqlAlchemyStore(uri, artifacts.as_uri())
        _forget_engine(uri)
        if not healthy(temp):
            raise StoreError(f"MLflow built an incomplete store at {temp}")
        _put_in_place(temp, path)
    except BaseException:
        _forget_engine(uri)
        _remove(temp)
        raise
    _forget_engine(f"sqlite:///{path}")


def _migrate(path: Path) -> None:
    """Bring a store with data to the current schema on a copy; the copy replaces it when done."""
    temp = path.with_name(f"{path.name}{TEMP_INFIX}{os.getpid()}.tmp")
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as source, \
                contextlib.closing(sqlite3.connect(temp)) as copy:
            source.backup(copy)
            tables = _tables(copy)
            for leftover in sorted(t for t in tables if t.startswith(LEFTOVER_PREFIX)):
                if leftover.removeprefix(LEFTOVER_PREFIX) not in tables:
                    raise StoreError(f"{path}: table {leftover.removeprefix(LEFTOVER_PREFIX)} is missing and "
                                     f"{leftover} holds its copy; restore {path} from a backup")
                copy.execute(f'DROP TABLE "{leftover}"')
            copy.commit()
        done = subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", f"sqlite:///{temp}"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            if storage_text(last[0]):
                raise StorageError(f"migrating the MLflow store {path}: {storage_text(last[0])}; {ADVICE}")
            raise StoreError(f"the MLflow store {path} could not be migrated to this MLflow's schema "
                             f"({last[0]}); it is unchanged. Back it up, then see `mlflow db upgrade`.")
        if not healthy(temp):
            raise StoreError(f"migrating {path} left an incomplete schema; the store is unchanged")
        _put_in_place(temp, path)
    except BaseException:
        _remove(temp)
        raise
    _forget_engine(f"sqlite:///{path}")


def ensure_store(path: Path, artifacts: Path) -> str | None:
    """Make ``path`` a whole MLflow store (see the module); returns what was done, or None when it already
    was one. Raises ``StorageError`` when the disk refuses the writes (nothing is left half-written)."""
    head = head_revision()
    if healthy(path, head):
        return None
    try:
        with _locked(path):
            if healthy(path, head):  # another command built it while this one waited
                return None
            for leftover in path.parent.glob(f"{path.name}{TEMP_INFIX}*.tmp"):  # builds that were killed
                _remove(leftover)
            if path.is_file() and path.stat().st_size > 0 and holds_data(path):
                _migrate(path)
                return f"migrated {path} to MLflow's schema {head} (on a copy, then swapped in)"
            note = f"built the MLflow store {path}"
            if path.exists():
                aside = path.with_name(f"{path.name}{BROKEN_INFIX}{time.strftime('%Y%m%d-%H%M%S')}")
                os.replace(path, aside)
                _remove(path)  # its journal, if any, belonged to the set-aside file
                note = f"set aside a half-built MLflow store without data as {aside.name}; built {path} again"
            _build(path, artifacts)
            return note
    except (StorageError, StoreError):
        raise
    except Exception as err:
        cause = storage_cause(err)
        if cause:
            raise StorageError(f"setting up the MLflow store {path}: {cause}; nothing was changed; {ADVICE}") from err
        raise

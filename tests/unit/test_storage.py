"""Recognising a full or read-only disk in what the libraries raise, and telling a whole MLflow store from a
half-built one (the slow, real cases: tests/faults/test_mlflow_store.py)."""

import errno
import sqlite3

from affectflow.mlstore import head_revision, healthy, holds_data
from affectflow.storage import storage_cause, storage_text


def test_storage_failures_are_recognised_through_wrapping_and_others_are_not():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/home/x/features/a.npz")
        except OSError as inner:
            raise RuntimeError("saving the record failed") from inner
    except RuntimeError as outer:
        assert storage_cause(outer) == "no space left on device (/home/x/features/a.npz)"
    assert storage_cause(sqlite3.OperationalError("database or disk is full")).startswith("no space left")
    assert storage_cause(OSError(errno.EROFS, "Read-only file system")) == "read-only file system"
    assert storage_text("clip.mp4: OSError: [Errno 28] No space left on device") == "no space left on device"
    assert storage_cause(FileNotFoundError(errno.ENOENT, "No such file")) is None
    assert storage_cause(ValueError("a bad clip")) is None and storage_text(None) is None


def test_only_a_store_at_the_current_schema_without_leftovers_is_whole(tmp_path):
    db = tmp_path / "mlflow.db"
    assert not healthy(db) and not holds_data(db)
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        con.execute("INSERT INTO alembic_version VALUES (?)", (head_revision(),))
        con.execute("CREATE TABLE experiments (experiment_id INTEGER, name VARCHAR(256))")
        con.execute("INSERT INTO experiments VALUES (0, 'Default')")
    assert healthy(db) and not holds_data(db)  # MLflow's default experiment is nobody's work
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE _alembic_tmp_trace_tags (key VARCHAR(250))")
    assert not healthy(db)  # an interrupted migration's leftover
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO experiments VALUES (1, 'affectflow')")
    assert holds_data(db)
    (tmp_path / "garbage.db").write_bytes(b"not a database" * 100)
    assert not healthy(tmp_path / "garbage.db") and not holds_data(tmp_path / "garbage.db")

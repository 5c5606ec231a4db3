"""The operations stack's bookkeeping, without starting servers (tests/integration/test_operations.py starts them)."""

import socket

import pytest

from affectflow.errors import UserError
from affectflow.servers import Stack, free_port


def test_a_busy_preferred_port_gives_another_free_one():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        port = free_port(preferred=taken)
    assert port != taken and port > 0


def test_a_fresh_home_reports_everything_stopped(tmp_path):
    assert set(Stack(tmp_path).status().values()) == {"stopped"}


def test_restore_refuses_a_folder_that_is_not_a_backup(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "prefect.dump").write_bytes(b"")
    with pytest.raises(UserError, match="not a backup: mlflow.dump, mlflow-artifacts.tar.gz missing"):
        Stack(tmp_path / "home").restore(tmp_path / "backup")


def test_backup_needs_the_database_running(tmp_path):
    with pytest.raises(UserError, match="PostgreSQL is not running"):
        Stack(tmp_path).backup(tmp_path / "backup")


def test_the_password_is_made_once_and_private(tmp_path):
    stack = Stack(tmp_path)
    assert stack.password() == stack.password() and len(stack.password()) >= 24
    assert (tmp_path / "servers" / "secret").stat().st_mode & 0o077 == 0

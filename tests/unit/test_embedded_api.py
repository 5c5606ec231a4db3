"""The temporary Prefect API waits as long as the environment says, even when Prefect was imported first."""

from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as STARTUP_TIMEOUT

from cli.embedded_api import _startup_timeout


def test_a_startup_timeout_set_after_prefect_was_imported_is_used(monkeypatch):
    monkeypatch.setenv(STARTUP_TIMEOUT.name, "120")  # as ``activate_home`` sets it, after Prefect's import
    assert STARTUP_TIMEOUT.value() != 120  # what Prefect itself would wait
    assert _startup_timeout() == 120
    monkeypatch.delenv(STARTUP_TIMEOUT.name)
    assert _startup_timeout() == STARTUP_TIMEOUT.value()

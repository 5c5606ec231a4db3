"""The temporary Prefect API waits as long as the environment says, even when Prefect read its settings first."""

from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as STARTUP_TIMEOUT

from cli.embedded_api import _startup_timeout


def test_a_startup_timeout_set_after_prefect_read_its_settings_is_used(monkeypatch):
    prefect_waits = STARTUP_TIMEOUT.value()
    monkeypatch.setenv(STARTUP_TIMEOUT.name, str(prefect_waits + 100))  # as ``activate_home`` sets it: too late
    assert STARTUP_TIMEOUT.value() == prefect_waits  # for Prefect's own start
    assert _startup_timeout() == prefect_waits + 100
    monkeypatch.delenv(STARTUP_TIMEOUT.name)
    assert _startup_timeout() == prefect_waits

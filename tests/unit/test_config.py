"""One home for state: every path derives from AFFECTFLOW_HOME; configs hash stably."""

import os
from dataclasses import replace
from pathlib import Path

from affectflow.config import PreprocessConfig, activate_home, get_paths


def test_default_home_is_dot_affectflow_in_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv("AFFECTFLOW_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert get_paths().home == tmp_path / ".affectflow"


def test_every_path_is_under_the_home(tmp_path):
    paths = get_paths(tmp_path / "h")
    for name in ("inbox", "quarantine", "datasets", "features", "reports", "mlflow_db", "mlflow_artifacts",
                 "bentoml_home", "prefect_home"):
        assert getattr(paths, name).is_relative_to(paths.home), name
    assert paths.mlflow_tracking_uri == f"sqlite:///{paths.home / 'mlflow.db'}"


def test_switching_homes_moves_derived_settings_but_keeps_user_choices(monkeypatch, tmp_path):
    for name in ("AFFECTFLOW_HOME", "BENTOML_HOME", "NUMBA_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", "/srv/prefect")  # the user's own Prefect set-up
    first = activate_home(tmp_path / "a")
    assert Path(os.environ["BENTOML_HOME"]) == first.bentoml_home
    second = activate_home(tmp_path / "b")
    env = os.environ
    assert Path(env["BENTOML_HOME"]) == second.bentoml_home
    assert Path(env["AFFECTFLOW_HOME"]) == second.home
    assert env["PREFECT_HOME"] == "/srv/prefect"
    assert second.inbox.is_dir() and not (tmp_path / "b" / "inbox").samefile(first.inbox)


def test_preprocess_hash_is_stable_and_sensitive():
    cfg = PreprocessConfig()
    assert cfg.hash() == PreprocessConfig().hash()
    assert cfg.hash() != replace(cfg, frame_size=224).hash()
    assert PreprocessConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg
    assert cfg.audio_steps == 1 + cfg.audio_samples // cfg.hop_length

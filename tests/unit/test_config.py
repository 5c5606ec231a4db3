"""One home for state: every path derives from AFFECTFLOW_HOME; configs hash stably."""

import os
from dataclasses import replace
from pathlib import Path

import pytest

from affectflow.config import (
    PreprocessConfig,
    TrainConfig,
    activate_home,
    get_paths,
    preprocessing,
    settings_file,
)
from affectflow.errors import ConfigError


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


def test_training_settings_are_checked_with_the_reason():
    with pytest.raises(ConfigError, match=r"epochs=0 is out of range \(maximum epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="dropout=1.5"):
        TrainConfig(dropout=1.5)
    with pytest.raises(ConfigError, match="leave speakers to train on"):
        TrainConfig(val_fraction=0.5, test_fraction=0.5)
    assert TrainConfig.from_mapping({"learning_rate": 1}).learning_rate == 1.0  # a whole number is a number
    with pytest.raises(ConfigError, match="speaker_norm must be true or false"):
        TrainConfig.from_mapping({"speaker_norm": "yes"})


def test_a_settings_file_may_be_toml_or_json(tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text("epochs = 3\n")
    assert settings_file(toml) == {"epochs": 3}
    toml.write_text("[training]\nepochs = 4\n")
    assert settings_file(toml) == {"epochs": 4}
    toml.write_text("epochs = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        settings_file(toml)


def test_preprocessing_is_assembled_in_one_place():
    assert preprocessing() == PreprocessConfig()
    assert preprocessing("none").face_backend == "none"
    assert preprocessing("none").hash() != PreprocessConfig().hash()
    with pytest.raises(ConfigError, match="unknown face backend 'dlib'"):
        preprocessing("dlib")

"""The ``affectflow`` command in process: every command explains itself; user errors are one line, status 2."""

import json

import pytest

from affectflow.config import TrainConfig
from cli.main import build_parser, main, training_config

COMMANDS = ["demo", "synth", "datasets", "preprocess", "ingest", "train", "evaluate", "predict", "serve", "models",
            "servers", "promote", "rollback"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: affectflow" in capsys.readouterr().out


def user_error(argv: list[str], capsys) -> str:
    """Run ``affectflow ARGV``; it must exit 2 with one ``error:`` line and no traceback. Returns the line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize(("argv", "says"), [
    (["synth", "--out", "{tmp}/batch", "--clips", "12", "--speakers", "3"], "at least 18 clips"),
    (["train", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["train", "--dataset", "nope", "--epochs", "0"], "epochs=0 is out of range"),
    (["train", "--dataset", "nope", "--val-fraction", "0.6", "--test-fraction", "0.5"], "leave speakers to train on"),
    (["train", "--dataset", "nope", "--config", "{tmp}/missing.toml"], "does not exist"),
    (["predict", "{tmp}/missing.mp4", "--model", "runs:/0/model"], ""),
    (["predict", "{tmp}/clip.mp4"], "no champion yet: train a dataset first"),
    (["predict", "{tmp}/clip.mp4", "--dataset", "emodb"], "no champion for dataset 'emodb' (available: none yet)"),
])
def test_user_errors_are_one_line_and_status_2(argv, says, home, tmp_path, capsys):
    argv = ["--home", str(home.home), *(a.format(tmp=tmp_path) for a in argv)]
    assert says in user_error(argv, capsys)


def test_bad_option_values_are_refused_by_the_parser_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "x", "--epochs", "many"])
    assert exit_info.value.code == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_debug_shows_the_traceback(home, tmp_path):
    with pytest.raises(Exception, match="at least 18 clips"):
        main(["--home", str(home.home), "--debug", "synth", "--out", str(tmp_path / "b"), "--clips", "12",
              "--speakers", "3"])


def test_every_training_setting_is_an_option_with_the_fields_name(tmp_path):
    config = tmp_path / "train.toml"
    config.write_text("[training]\nepochs = 7\nlearning_rate = 0.01\naudio_encoder = 'stats'\n")
    args = build_parser().parse_args(["train", "--dataset", "x", "--config", str(config), "--epochs", "9",
                                      "--no-speaker-norm", "--face-backend", "none"])
    chosen = training_config(args)
    assert chosen == TrainConfig(epochs=9, learning_rate=0.01, audio_encoder="stats", speaker_norm=False)
    assert args.face_backend == "none"
    for name in TrainConfig.__dataclass_fields__:
        assert f"--{name.replace('_', '-')}" in build_parser()._subparsers._group_actions[0].choices["train"].format_help()


def test_cross_validation_refits_by_default_unless_told_otherwise():
    parse = build_parser().parse_args
    assert training_config(parse(["train", "--dataset", "x", "--cv", "3"])).refit
    assert not training_config(parse(["train", "--dataset", "x", "--cv", "3", "--no-refit"])).refit
    assert not training_config(parse(["train", "--dataset", "x"])).refit


def test_json_config_files_and_their_errors(tmp_path, capsys):
    good = tmp_path / "train.json"
    good.write_text(json.dumps({"epochs": 5, "dropout": 0.1}))
    assert training_config(build_parser().parse_args(["train", "--dataset", "x", "--config", str(good)])).epochs == 5
    for text, says in [("{", "is not valid JSON"), ('{"epoch": 5}', "unknown training settings ['epoch']"),
                       ('{"epochs": "five"}', "epochs must be a whole number")]:
        good.write_text(text)
        assert says in user_error(["train", "--dataset", "x", "--config", str(good)], capsys)

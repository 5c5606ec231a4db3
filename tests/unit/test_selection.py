"""Cross-validation's choices: nested selection's candidate grid, the classes corpora share."""

import pandas as pd
import pytest

from affectflow.config import ConfigError, TrainConfig
from affectflow.crossval import candidate_grid, shared_classes


def test_grid_holds_every_combination_with_typed_values():
    base = TrainConfig(seed=7)
    grid = candidate_grid(base, "dropout=0.3,0.5 audio_encoder=stats,hybrid speaker_norm=true")
    assert [c.name for c in grid] == [
        "dropout=0.3 audio_encoder=stats speaker_norm=True", "dropout=0.3 audio_encoder=hybrid speaker_norm=True",
        "dropout=0.5 audio_encoder=stats speaker_norm=True", "dropout=0.5 audio_encoder=hybrid speaker_norm=True"]
    assert (grid[3].config.dropout, grid[3].config.audio_encoder, grid[3].config.seed) == (0.5, "hybrid", 7)
    assert candidate_grid(base, "hidden_units=64")[0].config.hidden_units == 64


@pytest.mark.parametrize("spec, error", [
    ("dropout", "NAME=V1,V2"),
    ("", "names no setting"),
    ("dropuot=0.3", "unknown training settings ['dropuot']"),
    ("hidden_units=big", "hidden_units must be a whole number, got 'big'"),
])
def test_bad_grids_name_the_setting(spec, error):
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]")):
        candidate_grid(TrainConfig(), spec)


def test_corpora_trained_together_are_scored_on_the_classes_they_share_in_canonical_order():
    emodb = pd.DataFrame({"emotion": ["boredom", "anger", "neutral", "fear", "disgust", "happiness", "sadness"]})
    ravdess = pd.DataFrame({"emotion": ["surprise", "calm", "sadness", "anger", "neutral", "fear", "disgust",
                                        "happiness"]})
    assert shared_classes([emodb, ravdess]) == ("anger", "disgust", "fear", "happiness", "sadness", "neutral")

"""Metrics per speaker and demographic group, from prediction frames."""


import numpy as np
import pandas as pd
import pytest

from affectflow.evaluation import prediction_frame, score, score_predictions
from affectflow.groups import (
    age_band,
    group_metrics,
    groups_markdown,
    metrics_by,
    missing_groups,
    with_age_band,
)
from affectflow.metrics import classification_metrics
from affectflow.model import AFFECT_OUTPUT, EMOTION_OUTPUT

CLASSES = ("anger", "neutral", "sadness")


def predictions(seed: int = 0, n: int = 60) -> tuple[pd.DataFrame, dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    probs = rng.random((n, 3))
    probs[np.arange(n), labels] += rng.random(n) * 1.5  # mostly right
    probs /= probs.sum(axis=1, keepdims=True)
    affect = rng.uniform(-1, 1, (n, 2))
    outputs = {EMOTION_OUTPUT: probs, AFFECT_OUTPUT: np.clip(affect + rng.normal(scale=0.3, size=(n, 2)), -1, 1)}
    frame = pd.DataFrame({"speaker": [f"s{i % 4}" for i in range(n)], "emotion": [CLASSES[i] for i in labels],
                          "arousal": affect[:, 0], "valence": affect[:, 1],
                          "sex": ["female" if i % 4 < 2 else "male" for i in range(n)],
                          "age": [25 + 10 * (i % 3) for i in range(n)]})
    frame.loc[0, "sex"] = None
    return prediction_frame(frame, outputs, CLASSES), outputs, labels


def test_prediction_frame_scores_like_the_arrays_it_came_from():
    frame, outputs, labels = predictions()
    affect = frame[["arousal", "valence"]].to_numpy()
    expected, expected_matrix = score(labels, affect, outputs, CLASSES)
    got, matrix = score_predictions(frame, CLASSES)
    assert got == pytest.approx(expected)
    np.testing.assert_array_equal(matrix, expected_matrix)
    assert set(frame["predicted"]) <= set(CLASSES) and "p_anger" in frame and "predicted_valence" in frame


def test_per_speaker_rows_match_metrics_of_that_speakers_clips():
    frame, _, _ = predictions()
    table = metrics_by(frame, "speaker", CLASSES).set_index("value")
    assert list(table.index) == ["s0", "s1", "s2", "s3"]
    for speaker, row in table.iterrows():
        own = frame[frame["speaker"] == speaker]
        index = {c: i for i, c in enumerate(CLASSES)}
        reference = classification_metrics(own["emotion"].map(index).to_numpy(), own["predicted"].map(index).to_numpy(),
                                           CLASSES)
        assert row["n"] == len(own)
        assert row["uar"] == pytest.approx(reference["uar"]) and row["war"] == pytest.approx(reference["war"])
        assert np.isfinite(row["ccc_arousal"])


def test_missing_values_form_an_unknown_group_and_age_gets_bands():
    frame, _, _ = predictions()
    table = group_metrics(frame, CLASSES, ["sex", "age_band", "race"])
    sexes = table[table["group"] == "sex"].set_index("value")["n"]
    assert sexes.to_dict() == {"female": 29, "male": 30, "unknown": 1}
    bands = table[table["group"] == "age_band"]["value"].tolist()
    assert bands == ["20-29", "30-39", "40-49"]
    assert "race" not in set(table["group"])  # not provided by this corpus: skipped ...
    assert missing_groups(frame, ["sex", "age_band", "race"]) == ["race"]  # ... and reported
    text = groups_markdown(table)
    assert "| sex | unknown | 1 |" in text


@pytest.mark.parametrize("age,band", [(20, "20-29"), (29.9, "20-29"), ("41", "40-49"), (None, "unknown"),
                                      ("n/a", "unknown")])
def test_age_band(age, band):
    assert age_band(age) == band


def test_frames_without_age_are_left_alone():
    frame = pd.DataFrame({"speaker": ["a"]})
    assert with_age_band(frame) is frame



"""Drift statistics on numbers, the choice of reference on a manifest, the report's files, and the synthetic
shifts the integration test relies on."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from affectflow.drift import (
    PROFILE_FEATURES,
    DriftReport,
    _pitch,
    categorical_drift,
    choose_reference,
    compare,
    numeric_drift,
    training_rows,
)
from affectflow.ingest import _version
from affectflow.synth import SAMPLE_RATE, Shift, _plan, _render


def test_samples_of_one_distribution_do_not_drift_and_a_shifted_one_does():
    rng = np.random.default_rng(0)
    same = numeric_drift("x", rng.normal(0, 1, 300), rng.normal(0, 1, 300))
    assert (same.test, same.drifted) == ("ks", False) and same.p_value > 0.05
    shifted = numeric_drift("x", rng.normal(0, 1, 300), rng.normal(0.5, 1, 300))
    assert shifted.drifted and shifted.p_value < 1e-4
    assert shifted.batch - shifted.reference == pytest.approx(0.5, abs=0.2)
    assert numeric_drift("x", rng.normal(0, 1, 300), rng.normal(0.5, 1, 300), p_threshold=1e-30).drifted is False


def test_missing_values_are_left_out_and_a_feature_on_one_side_only_drifts():
    with_gaps = numeric_drift("x", [1.0, 2.0, math.nan, 3.0], [1.0, 2.0, 3.0, math.nan])
    assert (with_gaps.statistic, with_gaps.drifted) == (0.0, False)
    assert numeric_drift("x", [math.nan], [math.nan, math.nan]) is None  # absent on both sides: not a test
    gone = numeric_drift("face_brightness", [120.0, 130.0], [math.nan, math.nan])
    assert (gone.test, gone.drifted, gone.p_value, gone.reference, gone.batch) == ("presence", True, None, 125.0, None)


def test_categorical_shares_are_compared_on_the_contingency_table():
    reference = ["anger", "fear", "neutral"] * 20
    same = categorical_drift("emotion", reference, ["neutral", "fear", "anger"] * 10)
    assert (same.test, same.drifted) == ("chi-square", False) and same.p_value > 0.9
    assert same.batch == {"anger": pytest.approx(1 / 3, abs=1e-6), "fear": pytest.approx(1 / 3, abs=1e-6),
                          "neutral": pytest.approx(1 / 3, abs=1e-6)}
    lopsided = categorical_drift("emotion", reference, ["anger"] * 25 + ["fear"] * 5)
    assert lopsided.drifted and lopsided.p_value < 1e-4
    new_people = categorical_drift("speaker", ["a", "b"] * 15, ["c", "d"] * 15)
    assert new_people.drifted and set(new_people.batch) == {"c", "d"}
    one_class = categorical_drift("emotion", ["anger"] * 5, ["anger"] * 3)
    assert (one_class.p_value, one_class.drifted) == (1.0, False)


def _profiles(rng: np.random.Generator, n: int, loudness: float = -20.0) -> pd.DataFrame:
    frame = pd.DataFrame({name: rng.normal(0, 1, n) for name in PROFILE_FEATURES})
    frame["loudness_dbfs"] += loudness
    frame[["face_share", "face_brightness", "face_sharpness"]] = math.nan  # an audio-only corpus
    frame["emotion"] = np.resize(["anger", "neutral"], n)
    frame["speaker"] = "s1"
    return frame


def test_the_batch_drifts_when_most_features_of_one_group_do():
    rng = np.random.default_rng(1)
    features, skipped = compare(_profiles(rng, 60), _profiles(rng, 40, loudness=-10.0))
    assert skipped == ["face_share", "face_brightness", "face_sharpness"]
    assert [f.name for f in features if f.drifted] == ["loudness_dbfs"]
    report = DriftReport("corpus", "b2", {"kind": "earlier", "dataset_version": "v-1", "clips": 60, "note": "n"},
                         40, 0.05, 0.5, features, skipped)
    assert report.group_shares["voice"] == pytest.approx(1 / 3) and "face" not in report.group_shares
    assert not report.drifted and DriftReport(**{**report.__dict__, "threshold": 0.3}).drifted_groups == ["voice"]
    summary = json.loads(json.dumps(report.to_dict()))  # what drift.json holds: plain JSON, no NaN
    loudness = next(f for f in summary["features"] if f["name"] == "loudness_dbfs")
    assert loudness["drifted"] and loudness["batch_mean"] - loudness["reference_mean"] == pytest.approx(10, abs=1)
    assert summary["skipped"] == skipped and summary["drifted_features"] == ["loudness_dbfs"]
    assert "loudness_dbfs" in report.markdown() and "not drifted" in report.markdown()

    louder_and_higher = _profiles(rng, 40, loudness=-10.0)
    louder_and_higher["pitch_median_hz"] += 3.0
    features, skipped = compare(_profiles(rng, 60), louder_and_higher)
    report = DriftReport(**{**report.__dict__, "features": features})
    assert report.drifted_groups == ["voice"] and report.to_dict()["drifted"]


def test_new_speakers_are_no_drift_but_one_dominant_speaker_is():
    rng = np.random.default_rng(2)
    reference, batch = _profiles(rng, 60), _profiles(rng, 40)
    reference["speaker"] = np.resize([f"r{i}" for i in range(6)], 60)
    batch["speaker"] = np.resize([f"n{i}" for i in range(4)], 40)
    balance = {f.name: f for f in compare(reference, batch)[0]}["speaker_balance"]
    assert (balance.p_value, balance.drifted) == (1.0, False)
    batch["speaker"] = ["n0"] * 31 + [f"n{i}" for i in range(1, 10)]
    balance = {f.name: f for f in compare(reference, batch)[0]}["speaker_balance"]
    assert balance.drifted and balance.batch > 2 * balance.reference


def _manifest() -> pd.DataFrame:
    rows = [{"clip_hash": f"{batch}{i}", "batch": batch, "speaker": f"{batch}-s", "emotion": "anger",
             "arousal": 0.5, "valence": -0.5} for batch in ("a", "b", "c") for i in range(3)]
    return pd.DataFrame(rows)


def test_the_reference_is_the_champions_training_data_else_every_earlier_clip():
    manifest = _manifest()
    trained_on_ab = _version(manifest.iloc[:6])
    assert training_rows(manifest, trained_on_ab)["batch"].unique().tolist() == ["a", "b"]
    champion = choose_reference(manifest, "c", trained_on_ab, "m/1")
    assert (champion.kind, champion.dataset_version, len(champion.rows)) == ("champion", trained_on_ab, 6)
    # The champion saw the batch itself: only what came before the batch is compared with.
    seen = choose_reference(manifest, "b", trained_on_ab, "m/1")
    assert (seen.kind, seen.rows["batch"].unique().tolist()) == ("champion", ["a"]) and "this batch" in seen.note
    nobody = choose_reference(manifest, "c", None)
    assert (nobody.kind, len(nobody.rows), nobody.dataset_version) == ("earlier", 6, trained_on_ab)
    elsewhere = choose_reference(manifest, "c", "v-000000000000", "m/1")
    assert elsewhere.kind == "earlier" and "no batch boundary" in elsewhere.note
    first = choose_reference(manifest, "a", None)
    assert first.rows.empty and first.dataset_version is None


def test_synthetic_shifts_change_only_what_they_name():
    clip = _plan(6, 1, seed=5)[0]
    frames, audio = _render(clip, 1.0, 48, 25, Shift())
    louder = _render(clip, 1.0, 48, 25, Shift(gain_db=6.0))[1]
    assert np.sqrt(np.mean(louder ** 2)) / np.sqrt(np.mean(audio ** 2)) == pytest.approx(10 ** (6 / 20), rel=0.02)
    higher = _render(clip, 1.0, 48, 25, Shift(pitch_semitones=7.0))[1]
    assert _pitch(higher, SAMPLE_RATE)[0] / _pitch(audio, SAMPLE_RATE)[0] == pytest.approx(2 ** (7 / 12), rel=0.05)
    faceless, same_audio = _render(clip, 1.0, 48, 25, Shift(faces=False))
    assert np.array_equal(same_audio, audio) and not np.array_equal(faceless, frames)

"""Speaker-independent k-fold cross-validation on toy arrays: folds, validation speakers, pooled metrics."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from affectflow.arrays import Arrays
from affectflow.config import TrainConfig
from affectflow.crossval import CALIBRATION_CLIPS, FOLD, Candidate, cross_validate, val_speakers, write_report

CLASSES = ("anger", "happiness", "sadness")
STEPS, N_MFCC = 12, 40
CONFIG = replace(TrainConfig(), task="multitask", epochs=15, hidden_units=16, batch_size=8, patience=3,
                 audio_encoder="stats")


def toy_corpus(speakers: int = 6, per_speaker: int = 12, seed: int = 0) -> tuple[pd.DataFrame, Arrays]:
    """Audio-only clips whose MFCC mean follows the class, shifted by a per-speaker offset (a voice)."""
    rng = np.random.default_rng(seed)
    rows, mfcc = [], []
    for s in range(speakers):
        voice = rng.normal(scale=2.0, size=N_MFCC)
        for i in range(per_speaker):
            label = i % len(CLASSES)
            rows.append({"speaker": f"s{s}", "emotion": CLASSES[label], "record": f"s{s}-{i}.npz"})
            mfcc.append(rng.normal(size=(STEPS, N_MFCC)) + voice + 1.5 * label)
    frame = pd.DataFrame(rows)
    labels = frame["emotion"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    affect = np.stack([labels - 1.0, 1.0 - labels], axis=1).astype("float32") * 0.5
    inputs = {"mfcc": np.asarray(mfcc, "float32"), "audio_mask": np.ones((len(frame), 1), "float32")}
    return frame, Arrays(inputs, labels, affect, frame["speaker"].to_numpy())


@pytest.fixture(scope="module")
def result():
    frame, arrays = toy_corpus()
    return cross_validate(frame, CONFIG, k=2, arrays=arrays, progress=lambda _: None)


def test_every_clip_is_predicted_once_by_a_model_that_never_saw_its_speaker(result):
    frame, _ = toy_corpus()
    assert len(result.predictions) == len(frame)
    assert sorted(result.predictions["record"]) == sorted(frame["record"])
    tested = [set(f.test_speakers) for f in result.folds]
    assert set.union(*tested) == set(frame["speaker"]) and sum(map(len, tested)) == frame["speaker"].nunique()
    for fold in result.folds:
        assert not set(fold.val_speakers) & set(fold.test_speakers)
        assert fold.n_train + fold.n_val + fold.n_test == len(frame)
        rows = result.predictions[result.predictions[FOLD] == fold.index]
        assert set(rows["speaker"]) == set(fold.test_speakers)


def test_summary_reports_mean_and_std_per_metric_and_pooled_per_class_recall(result):
    summary = result.summary()
    uars = [f.metrics["uar"] for f in result.folds]
    assert summary["uar"]["mean"] == pytest.approx(np.mean(uars))
    assert summary["uar"]["std"] == pytest.approx(np.std(uars, ddof=1))
    assert {"war", "macro_f1", "ccc_arousal", "ccc_valence"} <= set(summary)
    pooled = result.pooled()
    predictions = result.predictions
    for name in CLASSES:
        rows = predictions[predictions["emotion"] == name]
        assert pooled[f"recall_{name}"] == pytest.approx((rows["predicted"] == name).mean())
    assert pooled["uar"] > 0.6  # the classes are learnable once each voice is normalised away
    assert result.confusion().sum() == len(predictions)


def test_speaker_normalised_runs_also_score_unaligned_clips(result):
    assert result.unaligned is not None and len(result.unaligned) == len(result.predictions)
    frame, arrays = toy_corpus(speakers=3, per_speaker=6)
    plain = cross_validate(frame, replace(CONFIG, speaker_norm=False, epochs=2), k=3, arrays=arrays,
                           progress=lambda _: None)
    assert plain.unaligned is None and "pooled_unaligned" not in plain.to_dict()
    assert plain.calibrated == {} and "calibration_curve" not in plain.to_dict()


def test_calibration_curve_scores_the_same_clips_aligned_as_calibration_does_after_so_many_clips(result):
    assert sorted(result.calibrated) == list(CALIBRATION_CLIPS)
    for view in result.calibrated.values():
        assert sorted(view["record"]) == sorted(result.predictions["record"])
    curve = result.calibration_curve()
    assert list(curve) == ["unaligned", *map(str, CALIBRATION_CLIPS), "all"]
    # a speaker has 12 clips: after 20 calibration knows all of them, shrunk by 3 average ones: nearly the evaluation
    by_record = result.predictions.set_index("record")["predicted"]
    after_all = result.calibrated[20].set_index("record")["predicted"]
    assert (after_all == by_record.loc[after_all.index]).mean() >= 0.8
    assert curve["5"] > curve["unaligned"]  # five clips of a voice already take most of its offset away


def test_report_files_are_written_and_json_ready(result, tmp_path):
    paths = write_report(result, tmp_path / "cv")
    loaded = json.loads(paths["json"].read_text())
    assert loaded["k"] == 2 and loaded["summary"]["uar"]["folds"] == 2 and "pooled_unaligned" in loaded
    assert "mean ± std" in paths["markdown"].read_text()
    groups = pd.read_csv(paths["groups"])
    speakers = groups[groups["group"] == "speaker"]
    assert speakers["n"].sum() == len(result.predictions)  # every held-out clip in its speaker's row
    assert len(pd.read_csv(paths["predictions"])) == len(result.predictions)
    assert paths["confusion"].stat().st_size > 0
    flat = result.flat_metrics()
    assert flat["cv_uar_mean"] == pytest.approx(result.summary()["uar"]["mean"])
    assert {"cv_uar_std", "cv_pooled_uar", "cv_pooled_unaligned_uar", "cv_pooled_uar_calibrated_5"} <= set(flat)
    assert loaded["calibration_curve"]["all"] == pytest.approx(result.pooled()["uar"])
    assert all(isinstance(v, float) for v in flat.values())


def test_validation_speakers_come_from_the_training_side_and_leave_some_to_train():
    speakers = ["a", "b", "c", "d", "e", "a", "b"]
    chosen = val_speakers(speakers, 0.2, seed=1)
    assert len(chosen) == 2 and set(chosen) <= set(speakers)  # as many as possible up to half: three train
    assert chosen == val_speakers(speakers, 0.2, seed=1)
    assert len(val_speakers(list("abcdef"), 0.2, seed=0)) == 3
    assert len(val_speakers(list("abcdefghijklmnopqrst"), 0.3, seed=0)) == 6
    assert len(val_speakers(["a", "b", "c"], 0.2, seed=0)) == 1
    assert len(val_speakers(["a", "b"], 0.9, seed=0)) == 1
    with pytest.raises(ValueError, match=">= 2"):
        val_speakers(["a", "a"], 0.2, seed=0)


def test_nested_selection_is_made_by_the_validation_speakers_and_reported():
    frame, arrays = toy_corpus()
    starved = Candidate("learning_rate=1e-06", replace(CONFIG, learning_rate=1e-6, epochs=2, min_epochs=0))
    sound = Candidate("learning_rate=0.002", CONFIG)
    cv = cross_validate(frame, CONFIG, k=2, arrays=arrays, progress=lambda _: None, candidates=[starved, sound])
    for fold in cv.folds:  # one validation speaker of 12 clips: either may win, but only by its score there
        assert list(fold.val_scores) == [starved.name, sound.name]
        assert fold.selected == max(fold.val_scores, key=fold.val_scores.get)
        assert 0 <= fold.val_scores[starved.name] <= 1 and fold.metrics["uar"] > 0.5
    assert "Nested selection" in cv.markdown() and cv.to_dict()["folds"][0]["selected"] == cv.folds[0].selected


def test_another_corpus_joins_every_training_side_and_leaves_the_folds_as_they_were(result):
    frame, arrays = toy_corpus()
    _, other = toy_corpus(speakers=3, seed=5)
    other = other.replace(speakers=np.array([f"other:{s}" for s in other.speakers]))
    mixed = cross_validate(frame, CONFIG, k=2, arrays=arrays, progress=lambda _: None, extra=other)
    for alone, with_other in zip(result.folds, mixed.folds, strict=True):
        assert (alone.test_speakers, alone.val_speakers) == (with_other.test_speakers, with_other.val_speakers)
        assert with_other.n_train == alone.n_train + len(other)
    assert sorted(mixed.predictions["record"]) == sorted(frame["record"])  # only the corpus itself is tested

"""Training augmentation: seeded copies of real speech, cached beside the records, never of held-out clips."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from support import shared_data

from affectflow.augment import SOURCE, augment_audio, copies_of, copy_path, copy_seed, training_copies
from affectflow.cache import preprocess_clips
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.crossval import candidate_grid
from affectflow.errors import UserError
from affectflow.features import load_features
from affectflow.media import read_audio

CFG = PreprocessConfig(num_frames=4, frame_size=32, face_backend="none", audio_seconds=2.0, n_mfcc=13,
                       audio_features="mfcc+egemaps")


@pytest.fixture(scope="module")
def speech() -> list:
    folder = shared_data("emodb")
    return [folder / name for name in ("03a01Wa.wav", "03a01Nc.wav", "08a01Wa.wav")] if folder.is_dir() else []


@pytest.fixture
def frame(speech, tmp_path) -> pd.DataFrame:
    if not speech:
        pytest.skip("needs ../shared/data/emodb (real speech)")
    results = preprocess_clips(speech, tmp_path / "features", CFG)
    assert all(r.ok for r in results)
    return pd.DataFrame({"path": [str(p) for p in speech], "record": [r.record for r in results],
                         "speaker": ["03", "03", "08"], "emotion": ["anger", "neutral", "anger"]})


def test_a_copy_is_the_same_for_the_same_seed_and_differs_across_seeds(speech):
    if not speech:
        pytest.skip("needs ../shared/data/emodb (real speech)")
    audio = read_audio(speech[0], 16000)
    first, again = augment_audio(audio, 16000, 7), augment_audio(audio, 16000, 7)
    np.testing.assert_array_equal(first, again)
    others = [augment_audio(audio, 16000, seed) for seed in range(8, 14)]
    assert all(o.dtype == np.float32 and np.isfinite(o).all() for o in others)
    assert any(o.shape != audio.shape or not np.allclose(o, audio) for o in others)
    # the process's own random streams are left as they were
    np.random.seed(0)
    expected = np.random.random()
    np.random.seed(0)
    augment_audio(audio, 16000, 9)
    assert np.random.random() == expected


def test_copies_are_cached_records_with_the_clip_labels_video_and_a_speaker_of_their_own(frame):
    copies = training_copies(frame, CFG, copies=2, seed=13)
    assert len(copies) == 2 * len(frame)
    assert list(copies["speaker"][:2]) == ["03~1", "03~2"] and set(copies["emotion"][:2]) == {"anger"}
    assert set(copies[SOURCE]) == set(frame["record"])
    original = load_features(frame["record"][0])
    copy = load_features(copies["record"][0])
    assert copy.config_hash == original.config_hash == CFG.hash()
    assert copy.mfcc.shape == original.mfcc.shape and copy.egemaps.shape == original.egemaps.shape
    assert not np.allclose(copy.mfcc, original.mfcc) and not np.allclose(copy.egemaps, original.egemaps)
    np.testing.assert_array_equal(copy.frames, original.frames)
    assert copies["record"][0] == str(copy_path(frame["record"][0], 13, 1))
    stamps = {path: os.stat(path).st_mtime_ns for path in copies["record"]}
    again = training_copies(frame, CFG, copies=2, seed=13)  # read back from the cache, not recomputed
    assert list(again["record"]) == list(copies["record"])
    assert {path: os.stat(path).st_mtime_ns for path in again["record"]} == stamps
    assert len({copy_seed(13, "03", 1), copy_seed(14, "03", 1), copy_seed(13, "03", 2), copy_seed(13, "08", 1)}) == 4


def test_a_damaged_copy_is_made_again(frame):
    copies = training_copies(frame, CFG, copies=1, seed=13)
    damaged = copies["record"][0]
    intact = load_features(damaged)
    with open(damaged, "r+b") as handle:
        handle.truncate(100)
    again = training_copies(frame, CFG, copies=1, seed=13)
    assert list(again["record"]) == list(copies["record"])
    np.testing.assert_array_equal(load_features(damaged).mfcc, intact.mfcc)  # the same seeded copy, whole again


def test_only_copies_of_training_clips_join_a_training_side(frame):
    copies = training_copies(frame, CFG, copies=1, seed=13)
    train = frame[frame["speaker"] == "03"]
    chosen = copies_of(train, copies)
    assert set(chosen[SOURCE]) == set(train["record"]) and len(chosen) == len(train)


def test_augmentation_cannot_be_a_candidate_of_nested_selection():
    with pytest.raises(UserError, match="augment"):
        candidate_grid(TrainConfig(), "augment=0,2")
    with pytest.raises(UserError, match="augment"):
        TrainConfig(augment=-1)

"""Feature extraction on real clips: shapes follow the config, missing modalities are masked, records roundtrip."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from conftest import shared_data

from affectflow.config import PreprocessConfig
from affectflow.features import (
    ClipFeatures,
    extract_features,
    fit_length,
    load_features,
    save_features,
    stack_inputs,
)
from affectflow.media import MediaError

SMALL = PreprocessConfig(num_frames=8, frame_size=32, audio_seconds=1.0, n_mfcc=13)


def test_shapes_and_dtypes_follow_the_config(make_clip):
    clip = make_clip("both.mp4", seconds=1.5, size=(160, 120))
    for cfg in (PreprocessConfig(), SMALL):
        features = extract_features(clip, cfg)
        assert features.frames.shape == (cfg.num_frames, cfg.frame_size, cfg.frame_size, 3)
        assert features.frames.dtype == np.uint8
        assert features.mfcc.shape == (cfg.audio_steps, cfg.n_mfcc)
        assert features.mfcc.dtype == np.float32
        assert (features.video_mask, features.audio_mask) == (1.0, 1.0)
        assert features.audio_seconds == pytest.approx(1.5, abs=0.05)
        assert features.config_hash == cfg.hash()


def test_extraction_is_deterministic(make_clip):
    clip = make_clip("again.mp4", seconds=1.0)
    first, second = extract_features(clip, SMALL), extract_features(clip, SMALL)
    np.testing.assert_array_equal(first.frames, second.frames)
    np.testing.assert_array_equal(first.mfcc, second.mfcc)


def test_long_audio_is_truncated_to_the_fixed_length(make_clip):
    features = extract_features(make_clip("long.mp4", seconds=2.0), SMALL)
    assert features.audio_seconds == pytest.approx(2.0, abs=0.05)
    assert features.mfcc.shape == (SMALL.audio_steps, SMALL.n_mfcc)


def test_fit_length_pads_at_the_end_and_truncates():
    audio = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(audio, 7), [1, 2, 3, 4, 5, 0, 0])
    np.testing.assert_array_equal(fit_length(audio, 3), [1, 2, 3])


def test_video_only_clip_has_zero_mfcc_and_audio_mask_0(make_clip):
    features = extract_features(make_clip("mute.mp4", seconds=1.0, audio=False), SMALL)
    assert (features.video_mask, features.audio_mask) == (1.0, 0.0)
    assert features.audio_seconds == 0.0
    assert np.all(features.mfcc == 0) and np.isfinite(features.mfcc).all()
    assert features.frames.any()


def test_audio_only_wav_has_blank_frames_and_video_mask_0():
    features = extract_features(shared_data("emodb", "03a01Fa.wav"), PreprocessConfig())
    assert (features.video_mask, features.audio_mask) == (0.0, 1.0)
    assert not features.frames.any()
    assert features.audio_seconds == pytest.approx(2.0, abs=0.01)
    assert np.isfinite(features.mfcc).all() and features.mfcc.any()


def test_real_face_video_has_both_modalities():
    features = extract_features(shared_data("faces", "single_face.mp4"), PreprocessConfig())
    assert (features.video_mask, features.audio_mask) == (1.0, 1.0)
    assert features.audio_seconds == pytest.approx(2.4, abs=0.1)


def test_silent_audio_track_is_masked_without_nan(make_clip):
    features = extract_features(make_clip("silent.mp4", seconds=1.0, freq=0), SMALL)
    assert (features.video_mask, features.audio_mask) == (1.0, 0.0)
    assert features.audio_seconds == pytest.approx(1.0, abs=0.05)
    assert np.all(features.mfcc == 0) and np.isfinite(features.mfcc).all()


def test_silent_wav_without_video_is_rejected(tmp_path):
    silent = tmp_path / "silence.wav"
    soundfile.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(MediaError, match="silence.wav.*neither usable video nor audio"):
        extract_features(silent, SMALL)


def test_garbage_file_is_rejected(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match="garbage.mp4"):
        extract_features(garbage, SMALL)


def _record(video_mask: float, audio_mask: float, seed: int) -> ClipFeatures:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (SMALL.num_frames, SMALL.frame_size, SMALL.frame_size, 3), dtype=np.uint8)
    mfcc = rng.standard_normal((SMALL.audio_steps, SMALL.n_mfcc)).astype(np.float32)
    return ClipFeatures(frames, mfcc, video_mask, audio_mask, 0.75, SMALL.hash())


def test_stack_inputs_gives_the_model_input_names_shapes_and_dtypes():
    batch = stack_inputs([_record(1.0, 1.0, 0), _record(0.0, 1.0, 1), _record(1.0, 0.0, 2)])
    assert set(batch) == {"frames", "mfcc", "video_mask", "audio_mask"}
    assert batch["frames"].shape == (3, SMALL.num_frames, SMALL.frame_size, SMALL.frame_size, 3)
    assert batch["frames"].dtype == np.uint8
    assert batch["mfcc"].shape == (3, SMALL.audio_steps, SMALL.n_mfcc)
    assert batch["mfcc"].dtype == np.float32
    np.testing.assert_array_equal(batch["video_mask"], np.array([[1.0], [0.0], [1.0]], dtype=np.float32))
    np.testing.assert_array_equal(batch["audio_mask"], np.array([[1.0], [1.0], [0.0]], dtype=np.float32))
    assert batch["video_mask"].dtype == batch["audio_mask"].dtype == np.float32


def test_save_and_load_roundtrip_leaves_no_temp_files(tmp_path):
    record = _record(0.0, 1.0, 3)
    path = tmp_path / "records" / "clip.npz"
    save_features(path, record)
    loaded = load_features(path)
    np.testing.assert_array_equal(loaded.frames, record.frames)
    np.testing.assert_array_equal(loaded.mfcc, record.mfcc)
    assert (loaded.video_mask, loaded.audio_mask, loaded.audio_seconds) == (0.0, 1.0, 0.75)
    assert loaded.config_hash == SMALL.hash()
    assert [p.name for p in path.parent.iterdir()] == ["clip.npz"]

"""Feature extraction on real clips: shapes follow the config, missing modalities are masked, records roundtrip."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from support import shared_data

from affectflow.config import PreprocessConfig
from affectflow.faces import FACE_COLUMNS, FACE_FEATURES
from affectflow.features import (
    AUDIO_EXTRAS,
    MODEL_INPUTS,
    ClipFeatures,
    blank_features,
    compiled_librosa,
    compute_audio_features,
    extract_features,
    fit_length,
    load_features,
    n_fft_for,
    save_features,
    stack_inputs,
)
from affectflow.media import ClipTooLong, DamagedVideo, MediaError, decode_audio, read_audio

SMALL = PreprocessConfig(num_frames=8, frame_size=32, audio_seconds=1.0, n_mfcc=13, face_crop_size=32)


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", *args], check=True, capture_output=True)


def test_shapes_and_dtypes_follow_the_config(make_clip):
    clip = make_clip("both.mp4", seconds=1.5, size=(160, 120))
    for cfg in (PreprocessConfig(), SMALL):
        features = extract_features(clip, cfg)
        t, steps = cfg.num_frames, cfg.audio_steps
        assert features.frames.shape == (t, cfg.frame_size, cfg.frame_size, 3)
        assert features.frames.dtype == np.uint8
        assert features.mfcc.shape == (steps, cfg.n_mfcc)
        assert features.mfcc_deltas.shape == (steps, 2 * cfg.n_mfcc)
        assert features.logmel.shape == (steps, cfg.n_mels)
        assert features.mfcc.dtype == features.mfcc_deltas.dtype == features.logmel.dtype == np.float32
        assert features.face.shape == (t, len(FACE_FEATURES)) and features.face.dtype == np.float32
        assert features.face_crops.shape == (t, cfg.face_crop_size, cfg.face_crop_size)
        assert features.face_crops.dtype == np.uint8
        assert features.face_present.shape == (t,) and features.face_table.shape == (t, len(FACE_COLUMNS))
        assert (features.video_mask, features.audio_mask) == (1.0, 1.0)
        assert features.audio_seconds == pytest.approx(1.5, abs=0.05)
        assert features.config_hash == cfg.hash()


def test_extraction_is_deterministic(make_clip):
    clip = make_clip("again.mp4", seconds=1.0)
    first, second = extract_features(clip, SMALL), extract_features(clip, SMALL)
    for name in ("frames", "mfcc", "mfcc_deltas", "logmel", "face", "face_crops", "face_present", "face_table"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_audio_features_share_one_mel_spectrogram_with_librosa_mfcc():
    librosa = compiled_librosa()

    t = np.arange(SMALL.audio_samples) / SMALL.sample_rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * np.linspace(0, 1, t.size)).astype(np.float32)
    sound = compute_audio_features(tone, SMALL)
    direct = librosa.feature.mfcc(y=fit_length(tone, SMALL.audio_samples), sr=SMALL.sample_rate, n_mfcc=SMALL.n_mfcc,
                                  n_mels=SMALL.n_mels, n_fft=n_fft_for(SMALL), hop_length=SMALL.hop_length,
                                  win_length=SMALL.win_length).T
    np.testing.assert_allclose(sound.mfcc, direct, rtol=1e-5, atol=1e-3)
    assert np.isfinite(sound.mfcc_deltas).all() and np.abs(sound.mfcc_deltas).max() > 0
    assert sound.logmel.max() <= sound.logmel.min() + 80.0 + 1e-3  # power_to_db keeps 80 dB below the peak


def test_processes_sharing_a_numba_cache_compile_librosa_in_turn(tmp_path):
    """Two processes compiling librosa's gufuncs into one cache at once can corrupt it (numba issue 10128): a
    process waits while another holds the cache's compile lock, then compiles and runs."""
    import os
    import sys

    from affectflow.storage import file_lock

    cache = tmp_path / "numba"
    code = "from affectflow.features import compiled_librosa; compiled_librosa(); print('compiled')"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    with file_lock(cache / ".affectflow-compile.lock"):
        child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=5)  # importing affectflow takes less; the lock keeps it from compiling
        assert not list(cache.glob("**/*.nbc"))
    assert child.communicate(timeout=900)[0].strip() == "compiled"
    assert list(cache.glob("**/*.nbc"))


def test_video_clips_decode_audio_in_process_like_the_ffmpeg_pipe(make_clip):
    clip = make_clip("tone.mp4", seconds=1.0, freq=440)
    piped, in_process = read_audio(clip, 16000), decode_audio(clip, 16000)
    assert abs(piped.size - in_process.size) < 0.03 * 16000  # AAC priming: a few ms more at most
    assert np.sqrt(np.mean(in_process**2)) == pytest.approx(np.sqrt(np.mean(piped**2)), rel=0.05)
    assert decode_audio(make_clip("mute.mp4", seconds=0.5, audio=False), 16000).size == 0


def test_frames_keep_faces_for_the_face_backend_and_the_model_gets_small_frames():
    clip = shared_data("faces", "single_face.mp4")
    features = extract_features(clip, PreprocessConfig())
    assert features.frames.shape == (16, 64, 64, 3)
    assert features.face_frames == 16
    assert 100 < features.face_crops.mean() < 200  # a lit face fills the crop, not black borders


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
    assert features.face_frames == 0 and not features.face.any() and not features.face_crops.any()
    assert features.logmel.any() and features.mfcc_deltas.any()
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


def test_truncated_file_is_rejected(make_clip, tmp_path):
    whole = make_clip("whole.mp4", seconds=1.0).read_bytes()  # index (moov) at the end, as cameras write
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(MediaError, match="truncated.mp4"):
        extract_features(truncated, SMALL)


def test_truncated_file_with_its_index_first_is_rejected_not_passed_on_as_audio(make_clip, tmp_path):
    faststart = tmp_path / "faststart.mp4"
    _ffmpeg("-i", str(make_clip("whole.mp4", seconds=2.0)), "-c", "copy", "-movflags", "+faststart", str(faststart))
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    with pytest.raises(DamagedVideo, match="cut.mp4.*truncated or damaged"):
        extract_features(truncated, SMALL)


def test_video_stream_without_frames_is_rejected(make_clip, tmp_path):
    empty = tmp_path / "no_frames.flv"
    _ffmpeg("-i", str(make_clip("src.mp4", seconds=0.5, audio=False)), "-c:v", "copy", "-frames:v", "0", str(empty))
    # Its header claims 596 hours (a stream without frames has no end): refused before decoding, as too long.
    with pytest.raises((DamagedVideo, ClipTooLong), match="no_frames.flv"):
        extract_features(empty, SMALL)


def test_hevc_mov_is_decoded(tmp_path):
    clip = tmp_path / "hevc.mov"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1", "-f", "lavfi", "-i",
            "sine=duration=1:sample_rate=16000", "-c:v", "libx265", "-x265-params", "log-level=error",
            "-tag:v", "hvc1", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(clip))
    features = extract_features(clip, SMALL)
    assert (features.video_mask, features.audio_mask) == (1.0, 1.0)
    assert features.frames.any()


def test_clip_over_the_limit_is_rejected_with_the_reason(tmp_path):
    clip = tmp_path / "interview.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=5:duration=61", "-f", "lavfi", "-i",
            "sine=duration=61:sample_rate=16000", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(clip))
    with pytest.raises(ClipTooLong, match=r"interview.mp4: lasts 61.0 s \(its longest stream\), over the 60 s limit"):
        extract_features(clip, PreprocessConfig())
    assert extract_features(clip, replace(SMALL, max_clip_seconds=120.0)).video_mask == 1.0


def test_audio_only_clip_over_the_limit_is_rejected(tmp_path):
    clip = tmp_path / "lecture.wav"
    soundfile.write(clip, np.full(16000 * 3, 0.1, dtype=np.float32), 16000)
    with pytest.raises(ClipTooLong, match=r"lecture.wav: lasts 3.0 s \(its longest stream\), over the 2 s limit"):
        extract_features(clip, replace(SMALL, max_clip_seconds=2.0))


def _record(video_mask: float, audio_mask: float, seed: int) -> ClipFeatures:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (SMALL.num_frames, SMALL.frame_size, SMALL.frame_size, 3), dtype=np.uint8)
    steps, t = SMALL.audio_steps, SMALL.num_frames
    present = (rng.random(t) > 0.5).astype(np.float32)
    table = rng.standard_normal((t, len(FACE_COLUMNS))).astype(np.float32)
    table[:, 5] = np.nan  # a column the backend did not estimate
    return ClipFeatures(
        frames, rng.standard_normal((steps, SMALL.n_mfcc)).astype(np.float32), video_mask, audio_mask, 0.75,
        SMALL.hash(), mfcc_deltas=rng.standard_normal((steps, 2 * SMALL.n_mfcc)).astype(np.float32),
        logmel=rng.standard_normal((steps, SMALL.n_mels)).astype(np.float32),
        face=rng.standard_normal((t, len(FACE_FEATURES))).astype(np.float32) * present[:, None],
        face_crops=rng.integers(0, 256, (t, SMALL.face_crop_size, SMALL.face_crop_size), dtype=np.uint8),
        face_present=present, face_table=table)


def test_stack_inputs_gives_the_model_input_names_shapes_and_dtypes():
    records = [_record(1.0, 1.0, 0), _record(0.0, 1.0, 1), _record(1.0, 0.0, 2)]
    batch = stack_inputs(records)
    t, crop = SMALL.num_frames, SMALL.face_crop_size
    assert set(batch) == set(MODEL_INPUTS) == {"frames", "mfcc", "video_mask", "audio_mask", "face", "face_crops",
                                               "face_mask"}
    assert batch["frames"].shape == (3, t, SMALL.frame_size, SMALL.frame_size, 3)
    assert batch["frames"].dtype == np.uint8
    assert batch["mfcc"].shape == (3, SMALL.audio_steps, SMALL.n_mfcc)
    assert batch["mfcc"].dtype == np.float32
    np.testing.assert_array_equal(batch["video_mask"], np.array([[1.0], [0.0], [1.0]], dtype=np.float32))
    np.testing.assert_array_equal(batch["audio_mask"], np.array([[1.0], [1.0], [0.0]], dtype=np.float32))
    assert batch["video_mask"].dtype == batch["audio_mask"].dtype == np.float32
    assert batch["face"].shape == (3, t, len(FACE_FEATURES)) and batch["face"].dtype == np.float32
    assert batch["face_crops"].shape == (3, t, crop, crop, 1) and batch["face_crops"].dtype == np.uint8
    assert batch["face_mask"].shape == (3, t) and batch["face_mask"].dtype == np.float32
    np.testing.assert_array_equal(batch["face_mask"][1], records[1].face_present)


def test_stack_inputs_gives_the_audio_extras_on_request():
    batch = stack_inputs([_record(1.0, 1.0, 0)] * 2, names=("mfcc", *AUDIO_EXTRAS))
    assert set(batch) == {"mfcc", "mfcc_deltas", "logmel"}
    assert batch["mfcc_deltas"].shape == (2, SMALL.audio_steps, 2 * SMALL.n_mfcc)
    assert batch["logmel"].shape == (2, SMALL.audio_steps, SMALL.n_mels)


def test_save_and_load_roundtrip_leaves_no_temp_files(tmp_path):
    record = _record(0.0, 1.0, 3)
    path = tmp_path / "records" / "clip.npz"
    save_features(path, record)
    loaded = load_features(path)
    for name in ("frames", "mfcc", "mfcc_deltas", "logmel", "face", "face_crops", "face_present", "face_table"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(record, name))  # NaN compares equal here
        assert getattr(loaded, name).dtype == getattr(record, name).dtype
    assert (loaded.video_mask, loaded.audio_mask, loaded.audio_seconds) == (0.0, 1.0, 0.75)
    assert loaded.config_hash == SMALL.hash()
    assert loaded.face_frames == int(record.face_present.sum())
    assert [p.name for p in path.parent.iterdir()] == ["clip.npz"]


def test_blank_features_have_every_shape_and_no_modality():
    blank = blank_features(SMALL)
    batch = stack_inputs([blank, _record(1.0, 1.0, 4)], names=(*MODEL_INPUTS, *AUDIO_EXTRAS))
    assert batch["frames"].shape[0] == 2
    assert (blank.video_mask, blank.audio_mask, blank.face_frames) == (0.0, 0.0, 0)

"""Decoding real files: sampling, frames, audio, probing, and clear errors for broken input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import shared_data

from affectflow.media import (
    MediaError,
    probe,
    read_audio,
    read_sampled,
    read_with_opencv,
    sample_indices,
)


def test_sample_indices_are_uniform_and_within_bounds():
    indices = sample_indices(160, 16)
    assert indices.tolist() == list(range(5, 160, 10))
    assert indices.min() >= 0 and indices.max() < 160


def test_sample_indices_repeat_frames_of_short_clips():
    indices = sample_indices(5, 16)
    assert len(indices) == 16
    assert set(indices.tolist()) == {0, 1, 2, 3, 4}
    assert np.all(np.diff(indices) >= 0)


def test_sample_indices_reject_empty_clip():
    with pytest.raises(ValueError):
        sample_indices(0, 16)


def test_read_sampled_returns_requested_count_at_working_width(make_clip):
    clip = make_clip("v.mp4", seconds=1.0, size=(160, 120), fps=25)
    sampled = read_sampled(clip, 4, 32)
    assert sampled.frames.shape == (4, 24, 32, 3)  # downscaled to 32 px wide, aspect kept
    assert sampled.frames.dtype == np.uint8
    assert (sampled.source_width, sampled.source_height, sampled.fps) == (160, 120, 25)
    assert sampled.indices.tolist() == sample_indices(25, 4).tolist() and sampled.scale == 0.2
    every = read_sampled(clip, 25, 32)
    np.testing.assert_array_equal(sampled.frames, every.frames[sample_indices(25, 4)])
    assert len({frame.tobytes() for frame in sampled.frames}) == 4  # the moving test pattern differs over time


def test_read_audio_length_matches_duration(make_clip):
    clip = make_clip("a.mp4", seconds=2.0)
    audio = read_audio(clip, sample_rate=16000)
    assert audio.dtype == np.float32
    assert abs(audio.size - 32000) < 0.05 * 32000
    assert 0.01 < float(np.sqrt(np.mean(audio**2))) < 1.0


def test_probe_audio_only_wav(make_clip):
    info = probe(make_clip("tone.wav", seconds=1.0, video=False))
    assert (info.has_video, info.has_audio) == (False, True)
    assert info.duration_s == pytest.approx(1.0, abs=0.05)


def test_probe_video_only(make_clip):
    info = probe(make_clip("mute.mp4", seconds=1.0, size=(96, 64), fps=25, audio=False))
    assert (info.has_video, info.has_audio) == (True, False)
    assert (info.width, info.height, info.num_frames) == (96, 64, 25)
    assert read_audio(info.path).size == 0


def test_probe_real_face_video():
    info = probe(shared_data("faces", "single_face.mp4"))
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (640, 360)


def _garbage(folder: Path) -> Path:
    path = folder / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _truncated(folder: Path, make_clip) -> Path:
    data = make_clip("whole.mp4", seconds=1.0).read_bytes()
    path = folder / "truncated.mp4"
    path.write_bytes(data[: int(len(data) * 0.3)])
    return path


def _empty(folder: Path) -> Path:
    path = folder / "empty.mp4"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("make_bad", ["garbage", "truncated", "empty", "missing"])
@pytest.mark.parametrize("reader", [probe, lambda p: read_sampled(p, 4, 32), read_audio],
                         ids=["probe", "read_sampled", "read_audio"])
def test_broken_files_raise_media_error_naming_the_file(tmp_path, make_clip, make_bad, reader):
    bad = {"garbage": lambda: _garbage(tmp_path), "truncated": lambda: _truncated(tmp_path, make_clip),
           "empty": lambda: _empty(tmp_path), "missing": lambda: tmp_path / "missing.mp4"}[make_bad]()
    with pytest.raises(MediaError, match=bad.name):
        reader(bad)


def test_videos_narrower_than_decord_can_take_areread_with_opencv(make_clip):
    """decord fails on valid videos under 64 px wide; they decode (through OpenCV) like any other."""
    tiny = read_sampled(make_clip("tiny.mp4", seconds=0.6, size=(48, 48), audio=False), 16, 320)
    assert tiny.frames.shape == (16, 48, 48, 3) and tiny.frames.std() > 0


def test_the_opencv_reader_returns_the_frames_decord_returns(make_clip):
    clip = make_clip("clip.mp4", seconds=1.0, size=(96, 96), audio=False)
    indices = sample_indices(25, 16)
    expected = read_sampled(clip, 16, 320).frames
    got = np.stack(read_with_opencv(clip, indices))
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 2  # same frames, same colours

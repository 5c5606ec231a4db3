"""The content-addressed feature cache: hits decode nothing, config changes recompute, bad clips are reported."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support import shared_data

from affectflow.cache import TEMP_GRACE_S, file_sha256, preprocess_clips, preprocess_paths
from affectflow.config import PreprocessConfig
from affectflow.features import extract_features, load_features, save_features
from affectflow.media import MediaError

CFG = PreprocessConfig(num_frames=8, frame_size=32, audio_seconds=1.0, n_mfcc=13, face_backend="none")  # cache logic is backend-blind


@pytest.fixture
def clips(make_clip, tmp_path):
    folder = tmp_path / "clips"
    return [make_clip(f"c{i}.mp4", seconds=1.0, folder=folder, freq=300 + 100 * i) for i in range(3)]


def test_file_sha256_streams_large_files(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 5 * 2**19 + 7, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_second_run_decodes_nothing(home, clips, monkeypatch):
    first = preprocess_clips(clips, home.features, CFG)
    assert [(r.ok, r.cached) for r in first] == [(True, False)] * 3
    for clip, result in zip(clips, first, strict=True):
        assert result.record == str(home.features / CFG.hash() / f"{file_sha256(clip)}.npz")
        assert Path(result.record).is_file()

    def decode(*_):
        raise AssertionError("a cached clip was decoded")

    monkeypatch.setattr("affectflow.cache.extract_features", decode)  # a decode now fails the clip
    second = preprocess_clips(clips, home.features, CFG)
    assert [(r.ok, r.cached, r.record) for r in second] == [(True, True, r.record) for r in first]
    monkeypatch.undo()
    for clip, result in zip(clips, second, strict=True):  # the record holds what extraction gives
        fresh, cached = extract_features(clip, CFG), load_features(result.record)
        np.testing.assert_array_equal(fresh.frames, cached.frames)
        np.testing.assert_array_equal(fresh.mfcc, cached.mfcc)


def test_records_follow_content_not_name(home, clips, tmp_path):
    renamed = shutil.copy(clips[0], tmp_path / "renamed.mp4")
    original, moved = preprocess_clips([clips[0], renamed], home.features, CFG)
    assert (original.cached, moved.cached) == (False, True)
    assert moved.record == original.record and moved.clip_hash == original.clip_hash


def test_changed_config_recomputes_in_a_new_folder(home, clips):
    (before,) = preprocess_clips(clips[:1], home.features, CFG)
    changed = replace(CFG, num_frames=4)
    (after,) = preprocess_clips(clips[:1], home.features, changed)
    assert (after.ok, after.cached, after.frames) == (True, False, 4) and after.record != before.record
    features = load_features(after.record)
    assert features.frames.shape[0] == 4 and features.config_hash == changed.hash()
    assert sorted(p.name for p in home.features.iterdir()) == sorted([CFG.hash(), changed.hash()])


def test_preprocess_clips_reports_bad_clips_and_keeps_going(home, clips, tmp_path):
    garbage = tmp_path / "clips" / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01garbage" * 500)
    missing = tmp_path / "clips" / "missing.mp4"
    paths = [clips[0], garbage, clips[1], missing, clips[2]]
    seen: list[tuple[int, int]] = []

    results = preprocess_clips(paths, home.features, CFG, progress=lambda d, t: seen.append((d, t)))

    assert [r.clip for r in results] == [str(p) for p in paths]
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert "garbage.mp4" in results[1].error and "missing.mp4" in results[3].error
    assert results[1].record is None and results[1].clip_hash == file_sha256(garbage)
    assert seen == [(i, 5) for i in range(1, 6)]
    for result in (results[0], results[2], results[4]):
        assert result.record.endswith(f"{result.clip_hash}.npz")
        assert (result.frames, result.cached) == (CFG.num_frames, False)
        assert result.audio_seconds == pytest.approx(1.0, abs=0.05)

    again = preprocess_clips(paths, home.features, CFG)
    assert [r.cached for r in again] == [True, False, True, False, True]
    assert [(r.ok, r.record, r.frames) for r in again] == [(r.ok, r.record, r.frames) for r in results]


def test_preprocess_clips_counts_video_frames_only_for_clips_with_video(home, make_clip):
    mute = make_clip("tone.wav", seconds=1.0, video=False)
    (result,) = preprocess_clips([mute], home.features, CFG)
    assert (result.ok, result.frames) == (True, 0)
    assert result.audio_seconds == pytest.approx(1.0, abs=0.01)


def test_preprocess_paths_reports_each_clip_then_a_summary(home, make_clip, tmp_path):
    batch = tmp_path / "batch"
    clips = [make_clip(f"b{i}.mp4", seconds=1.0, folder=batch, freq=300 + 100 * i) for i in range(2)]
    tone = make_clip("tone.wav", seconds=1.0, video=False, folder=batch / "audio")
    (batch / "labels.csv").write_text("path,emotion\n")
    (batch / ".hidden.mp4").write_bytes(b"skipped")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00garbage" * 300)

    lines = list(preprocess_paths([batch, broken], replace(CFG, face_backend="none"), cache_root=home.features))

    *per_clip, summary = lines
    assert [line["clip"] for line in per_clip] == [str(tone), *map(str, clips), str(broken)]
    assert [line["ok"] for line in per_clip] == [True, True, True, False]
    assert [line["frames"] for line in per_clip] == [0, CFG.num_frames, CFG.num_frames, 0]
    assert [line["face_frames"] for line in per_clip] == [0, 0, 0, 0]
    assert per_clip[0]["audio_seconds"] == pytest.approx(1.0, abs=0.01)
    assert "broken.mp4" in per_clip[3]["error"] and per_clip[0]["error"] is None
    assert json.loads(json.dumps(lines)) == lines
    assert {k: summary[k] for k in ("summary", "clips", "ok", "failed", "cached", "computed")} == {
        "summary": True, "clips": 4, "ok": 3, "failed": 1, "cached": 0, "computed": 3}
    assert summary["config_hash"] == replace(CFG, face_backend="none").hash()

    again = list(preprocess_paths([batch, broken], replace(CFG, face_backend="none"), cache_root=home.features))
    assert [line["cached"] for line in again[:-1]] == [True, True, True, False]
    assert (again[-1]["computed"], again[-1]["cached"]) == (0, 3)


def test_preprocess_paths_counts_face_frames(home):
    clip = shared_data("faces", "single_face.mp4")
    line, summary = preprocess_paths([clip], cache_root=home.features)
    assert (line["ok"], line["frames"], line["face_frames"]) == (True, 16, 16)
    assert summary["face_frames"] == 16 and summary["face_backend"] == "landmarks"
    cached, _ = preprocess_paths([clip], cache_root=home.features)
    assert cached == {**line, "cached": True}


def damage(record: Path, how: str) -> None:
    """What a disk, a copy tool or an old version can leave where a record should be."""
    data = record.read_bytes()
    if how == "truncated":
        record.write_bytes(data[: len(data) // 2])
    elif how == "flipped byte":  # inside the deflated frames: only a full read (CRC) notices
        middle = len(data) // 3
        record.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    elif how == "empty":
        record.write_bytes(b"")
    elif how == "other config":
        features = load_features(record)
        features.config_hash = "0" * 16
        save_features(record, features)


@pytest.mark.parametrize("how", ["truncated", "flipped byte", "empty", "other config"])
def test_a_damaged_record_is_recomputed_once(home, clips, tmp_path, how):
    (first,) = preprocess_clips(clips[:1], home.features, CFG)
    record = Path(first.record)
    shutil.copy(record, tmp_path / "good.npz")
    damage(record, how)

    (again,) = preprocess_clips(clips[:1], home.features, CFG)
    assert (again.ok, again.cached, again.repaired, again.record) == (True, False, True, first.record)
    repaired, good = load_features(record), load_features(tmp_path / "good.npz")
    np.testing.assert_array_equal(repaired.frames, good.frames)
    np.testing.assert_array_equal(repaired.mfcc, good.mfcc)
    assert repaired.config_hash == CFG.hash()
    (third,) = preprocess_clips(clips[:1], home.features, CFG)
    assert (third.ok, third.cached, third.repaired) == (True, True, False)


def test_a_damaged_record_whose_clip_fails_now_is_removed(home, clips, monkeypatch):
    (first,) = preprocess_clips(clips[:1], home.features, CFG)
    damage(Path(first.record), "truncated")

    def unreadable(clip, cfg):
        raise MediaError(f"{clip}: cannot be decoded now")

    monkeypatch.setattr("affectflow.cache.extract_features", unreadable)
    (again,) = preprocess_clips(clips[:1], home.features, CFG)
    assert (again.ok, again.repaired, again.record) == (False, True, None) and "decoded now" in again.error
    assert not Path(first.record).exists()  # never read later as if it were whole


def test_leftovers_of_killed_writes_are_removed_after_a_grace_period(home, clips):
    (first,) = preprocess_clips(clips[:1], home.features, CFG)
    folder, other = Path(first.record).parent, home.features / "0123456789abcdef"
    other.mkdir()
    old = time.time() - TEMP_GRACE_S - 60
    leftovers = [folder / f".{first.clip_hash}.k1ll3d.tmp", other / ".feedface.x.tmp"]
    for path in leftovers:
        path.write_bytes(b"PK\x03\x04 half a record")
        os.utime(path, (old, old))
    live = folder / f".{first.clip_hash}.wr1t1ng.tmp"  # a write in progress in another process
    live.write_bytes(b"PK\x03\x04")

    *lines, summary = preprocess_paths(clips[:1], CFG, cache_root=home.features)
    assert (summary["temporaries_removed"], summary["repaired"], summary["cached"]) == (2, 0, 1)
    assert not any(path.exists() for path in leftovers) and live.exists() and Path(first.record).is_file()
    assert [line["repaired"] for line in lines] == [False]
    *_, summary = preprocess_paths(clips[:1], CFG, cache_root=home.features)
    assert summary["temporaries_removed"] == 0

"""The synthetic corpus: real clips on disk, a label table that keeps the contract, and determinism."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectflow.labels import CIRCUMPLEX, LABELS_FILENAME, OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from affectflow.media import probe, read_audio
from affectflow.synth import SYNTH_EMOTIONS, write_synthetic_batch

CLIPS, SPEAKERS, SEED, SECONDS, SIZE = 18, 3, 7, 1.0, 64
COLUMNS = ["path", "dataset", "speaker", "emotion", "arousal", "valence", "intensity"]


def _write(out_dir: Path, seed: int = SEED) -> pd.DataFrame:
    return write_synthetic_batch(out_dir, clips=CLIPS, speakers=SPEAKERS, seed=seed, seconds=SECONDS,
                                 size=SIZE, dataset="synthetic-test")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out_dir = tmp_path_factory.mktemp("synth") / "batch"
    return out_dir, _write(out_dir)


def _digests(out_dir: Path) -> dict[str, str]:
    return {p.relative_to(out_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out_dir.rglob("*")) if p.is_file()}


def test_labels_csv_keeps_the_contract(batch):
    out_dir, labels = batch
    on_disk = pd.read_csv(out_dir / LABELS_FILENAME)
    assert list(on_disk.columns) == COLUMNS
    assert set(REQUIRED_COLUMNS) <= set(COLUMNS) and set(COLUMNS) - set(REQUIRED_COLUMNS) <= set(OPTIONAL_COLUMNS)
    pd.testing.assert_frame_equal(on_disk, labels)
    assert len(labels) == CLIPS and (labels.dataset == "synthetic-test").all()
    assert set(labels.emotion) == set(SYNTH_EMOTIONS) and set(SYNTH_EMOTIONS) <= set(CIRCUMPLEX)


def test_every_path_is_relative_named_and_present(batch):
    out_dir, labels = batch
    for row in labels.itertuples():
        path = Path(row.path)
        assert not path.is_absolute() and ".." not in path.parts
        assert re.fullmatch(rf"clips/{row.speaker}_\d{{4}}_{row.emotion}\.mp4", row.path)
        assert (out_dir / path).is_file()
    assert sorted(p.name for p in (out_dir / "clips").iterdir()) == sorted(Path(p).name for p in labels.path)


def test_every_speaker_has_every_emotion(batch):
    _, labels = batch
    counts = pd.crosstab(labels.speaker, labels.emotion)
    assert counts.shape == (SPEAKERS, len(SYNTH_EMOTIONS))
    assert (counts == CLIPS // (SPEAKERS * len(SYNTH_EMOTIONS))).all().all()


def test_affect_follows_the_circumplex_scaled_by_intensity(batch):
    _, labels = batch
    assert labels.intensity.between(0.4, 1.0).all()
    assert labels[["arousal", "valence"]].abs().le(1.0).all().all()
    for row in labels.itertuples():
        expected = np.asarray(CIRCUMPLEX[row.emotion]) * row.intensity
        observed = np.array([row.arousal, row.valence])
        assert np.abs(observed - expected).max() < 0.25, row
        strong = np.abs(expected) > 0.2
        assert (np.sign(observed[strong]) == np.sign(expected[strong])).all(), row
    happy, sad = labels[labels.emotion == "happiness"], labels[labels.emotion == "sadness"]
    assert (happy.valence > 0).all() and (happy.arousal > 0).all()
    assert (sad.valence < 0).all() and (sad.arousal < 0).all()


def test_clips_decode_with_video_and_audio(batch):
    out_dir, labels = batch
    for relpath in labels.path:
        info = probe(out_dir / relpath)
        assert info.has_video and info.has_audio
        assert (info.width, info.height) == (SIZE, SIZE)
        assert info.duration_s == pytest.approx(SECONDS, abs=0.1)
        audio = read_audio(out_dir / relpath, 16000)
        assert audio.size / 16000 == pytest.approx(SECONDS, abs=0.1)
        assert np.sqrt(np.mean(audio ** 2)) > 1e-3


def test_same_seed_gives_identical_labels_and_bytes(batch, tmp_path: Path):
    out_dir, labels = batch
    again = _write(tmp_path / "again")
    pd.testing.assert_frame_equal(again, labels)
    assert _digests(tmp_path / "again") == _digests(out_dir)


def test_another_seed_gives_another_corpus(tmp_path: Path):
    small = {"clips": 6, "speakers": 1, "seconds": 0.4, "size": 32}
    first = write_synthetic_batch(tmp_path / "a", seed=1, **small)
    second = write_synthetic_batch(tmp_path / "b", seed=2, **small)
    assert not np.allclose(first.intensity, second.intensity)
    assert _digests(tmp_path / "a") != _digests(tmp_path / "b")


def test_progress_counts_every_clip(tmp_path: Path):
    calls: list[tuple[int, int]] = []
    write_synthetic_batch(tmp_path / "p", clips=6, speakers=1, seconds=0.4, size=32,
                          progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 6) for i in range(1, 7)]


def test_too_few_clips_for_a_balanced_batch_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="every speaker has every emotion"):
        write_synthetic_batch(tmp_path / "x", clips=12, speakers=3)
    assert not (tmp_path / "x").exists()

"""Audio augmentation for training: seeded copies of the training speakers, as if other voices in other rooms.

Each clip with audio gets ``copies`` versions of its waveform through audiomentations (``chain``): a gain, Gaussian
noise at a signal-to-noise ratio, a simulated room's reverberation (pyroomacoustics), a pitch shift and a tempo
change, each applied with its own chance. Copy k of a speaker draws its settings from one seed (seed, speaker, k)
for all of that speaker's clips: one new voice in one new setting, as a new speaker would be; a run and its rerun
train on the same copies. The copy's audio features (MFCC, eGeMAPS, as the config asks) are computed as the
clip's; its video side is the clip's own. Copies are cached beside the clip's record in
``<config hash>.augmented-v<AUGMENT_VERSION>/`` of the feature cache and written atomically.

Copies only ever join a training side (``training_copies``): validation and test clips are never augmented. A
copy is its own speaker (``<speaker>~<copy>``), so speaker alignment in training normalises the clip as a test
speaker's clip is normalised, by its own recordings only.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.cache import DAMAGED
from affectflow.config import PreprocessConfig
from affectflow.features import (
    ClipFeatures,
    clip_functionals,
    compute_audio_features,
    is_silent,
    load_features,
    save_features,
    silent_audio_features,
)
from affectflow.media import read_audio

log = logging.getLogger(__name__)

# Bump when ``chain`` or the seeding changes: cached copies made by another chain are then not reused.
AUGMENT_VERSION = 3
SOURCE = "source_record"  # column of a copy: the record of the clip it was made from


def chain():
    """The transforms and their ranges: moderate, so a copy keeps its emotion (tempo within ±12%, pitch within
    ±2 semitones, noise at >= 10 dB SNR, reverberation times of ordinary rooms)."""
    import audiomentations as am

    return am.Compose([
        am.Gain(min_gain_db=-9.0, max_gain_db=6.0, p=0.8),
        am.AddGaussianSNR(min_snr_db=10.0, max_snr_db=35.0, p=0.5),
        am.RoomSimulator(min_target_rt60=0.2, max_target_rt60=0.7, calculation_mode="rt60", use_ray_tracing=False,
                         max_order=3, leave_length_unchanged=True, p=0.4),
        am.PitchShift(min_semitones=-2.0, max_semitones=2.0, p=0.5),
        am.TimeStretch(min_rate=0.88, max_rate=1.12, leave_length_unchanged=False, p=0.5),
    ])


@contextmanager
def _seeded(seed: int):
    """audiomentations draws from the global ``random`` and ``numpy.random`` states: seed them for the block
    and give the rest of the process its states back."""
    saved = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


def copy_seed(seed: int, speaker: str, copy: int) -> int:
    """The seed of one copy of a speaker's clips: the same for the same (seed, speaker, copy), unrelated across
    them. Every clip of a speaker's copy is drawn with one seed, so it gets the same settings (gain, noise level,
    room, pitch, tempo): the copy is one new voice in one new setting, as a new speaker would be."""
    text = np.frombuffer(speaker.encode(), dtype=np.uint8).astype(np.uint32)
    return int(np.random.SeedSequence([seed, copy, *text]).generate_state(1)[0])


def augment_audio(audio: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
    """One augmented version of mono float32 ``audio``, the same for the same seed."""
    with _seeded(seed):
        return np.asarray(chain()(samples=audio.astype(np.float32, copy=False), sample_rate=sample_rate),
                          dtype=np.float32)


def augmented_record(clip: ClipFeatures, audio: np.ndarray, cfg: PreprocessConfig) -> ClipFeatures:
    """``clip`` with the audio features of ``audio`` (an augmented version of its own)."""
    audio_mask = 0.0 if is_silent(audio) else 1.0
    sound = compute_audio_features(audio, cfg) if audio_mask and cfg.mfcc else silent_audio_features(cfg)
    return replace(clip, mfcc=sound.mfcc, mfcc_deltas=sound.mfcc_deltas, logmel=sound.logmel, audio_mask=audio_mask,
                   audio_seconds=audio.size / cfg.sample_rate, **clip_functionals(audio, audio_mask, cfg))


def copy_path(record: str | Path, seed: int, copy: int) -> Path:
    """Where a clip's copy is cached: beside the folder of its record, per chain version."""
    record = Path(record)
    return record.parent.with_name(f"{record.parent.name}.augmented-v{AUGMENT_VERSION}") / \
        f"{record.stem}-s{seed}-c{copy}.npz"


def _usable(copy: Path) -> bool:
    """The copy exists and reads in full; a damaged one (a disk fault: writes are atomic) is made again."""
    if not copy.exists():
        return False
    try:
        load_features(copy)
    except DAMAGED as err:
        log.warning("augmented copy %s is damaged (%s: %s): making it again", copy, type(err).__name__, err)
        return False
    return True


def _copies_of(clip_path: str, record: str, speaker: str, cfg: PreprocessConfig, copies: int,
               seed: int) -> list[Path]:
    """The cached copies of one clip, made where missing or damaged (its audio decoded once for all of them)."""
    targets = [copy_path(record, seed, k) for k in range(1, copies + 1)]
    missing = [k for k, target in enumerate(targets, start=1) if not _usable(target)]
    if missing:
        features = load_features(record)
        if not features.audio_mask:
            return []
        audio = read_audio(clip_path, cfg.sample_rate, max_seconds=cfg.max_clip_seconds)
        for k in missing:
            version = augment_audio(audio, cfg.sample_rate, copy_seed(seed, speaker, k))
            save_features(targets[k - 1], augmented_record(features, version, cfg))
    return targets


def training_copies(frame: pd.DataFrame, cfg: PreprocessConfig, copies: int, seed: int,
                    progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """``copies`` augmented rows per clip of ``frame`` that has audio: the clip's labels, ``record`` the copy's
    record, ``speaker`` ``<speaker>~<copy>`` and ``source_record`` the clip's record. ``frame`` needs ``path``
    (the clip) and ``record`` (its features under ``cfg``)."""
    rows = []
    for position, (_, row) in enumerate(frame.iterrows(), start=1):
        for k, target in enumerate(_copies_of(str(row["path"]), str(row["record"]), str(row["speaker"]), cfg, copies,
                                                   seed), start=1):
            rows.append({**row.to_dict(), "record": str(target), "speaker": f"{row['speaker']}~{k}",
                         SOURCE: row["record"]})
        if progress and (position % 100 == 0 or position == len(frame)):
            progress(f"augmented copies of {position}/{len(frame)} training clips")
    return pd.DataFrame(rows, columns=[*frame.columns, SOURCE])


def copies_of(train: pd.DataFrame, copies: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``copies`` (``training_copies``) made from clips in ``train``."""
    return copies[copies[SOURCE].isin(train["record"])]

"""Speaker calibration: label-free running statistics of each voice a client names.

Training aligns every speaker's audio features with the training population (``affectflow.speakers``); a
service sees one clip at a time. A request that names a ``speaker`` (a person, or a session standing for
one) adds its clip's sound to that voice's running sums (count, sum and sum of squares of every feature
over the frames with sound; over the clips with audio for clip-level eGeMAPS) and, once the voice has
``MIN_CLIPS`` clips, the clip is aligned with the statistics so far, itself included, shrunk towards the
population's as if ``speakers.PRIOR_CLIPS`` clips of the average voice had been heard too
(``speakers.shrunk``). No label is used.

Why neither from the first clip nor with the bare statistics: a few clips say as much about what was said as
about the voice (loudness, pitch level and spectral balance are the emotion too), and aligning with their
statistics alone takes that away. Cross-validation measured it (``crossval.calibration_curve``, pooled UAR of
held-out speakers, MFCC + eGeMAPS, seeds 13-15 on EmoDB and RAVDESS, docs/model.md): a clip aligned with its
own statistics alone is at chance (0.13-0.18); shrunk by 3 prior clips, 3 clips of a voice beat the unaligned
clip in 5 of 6 runs (+0.031 on average) and 5 clips gain 0.045 over the bare statistics of 5; after 20 the
prior costs 0.005. Below ``MIN_CLIPS`` a clip is answered unaligned (and still joins the statistics).

One SQLite file holds the voices (WAL: several request workers share it; each update is one immediate
transaction), bounded to ``max_voices`` (the least recently heard are forgotten first); ``forget`` removes
one. What is kept per voice is a few hundred numbers, no audio.
"""

from __future__ import annotations

import io
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from affectflow.arrays import Arrays
from affectflow.config import PreprocessConfig
from affectflow.errors import UserError
from affectflow.names import model_name
from affectflow.speakers import Statistics, align_with, aligned_inputs, shrunk, sound_rows

MAX_VOICES = 10_000
MIN_CLIPS = 3  # clips of a voice before its (shrunk) statistics align it: 3 beat unaligned in 5 of 6 CV runs
# A voice id is a name a client chose: printable, bounded, never a path or a control character.
VOICE_ID = re.compile(r"^[\w.@:+-][\w .@:+-]{0,127}$")


class VoiceError(UserError, ValueError):
    """A voice id that cannot be used (empty, too long, control characters)."""


def check_voice(voice: str) -> str:
    if not VOICE_ID.match(voice):
        raise VoiceError(f"speaker id {voice[:40]!r} must be 1-128 letters, digits, spaces or . @ : + - _")
    return voice


def book_path(folder: Path, dataset: str, preprocess: PreprocessConfig) -> Path:
    """The book of a dataset's model's voices in ``folder``: one per dataset and preprocessing, since
    statistics of features made one way mean nothing to features made another."""
    return folder / f"{model_name(dataset)}-{preprocess.hash()[:12]}.sqlite"


Sums = dict[str, np.ndarray]  # "<input>:n" (count), "<input>:sum", "<input>:squares" per feature


def clip_sums(arrays: Arrays) -> Sums:
    """Count, sum and sum of squares per feature of the sound in ``arrays`` (the rows ``sound_rows`` picks)."""
    sums = {}
    for name in aligned_inputs(arrays):
        rows = arrays.inputs[name][sound_rows(arrays, name)].astype(np.float64)
        sums[f"{name}:n"] = np.array(len(rows), np.float64)
        sums[f"{name}:sum"], sums[f"{name}:squares"] = rows.sum(axis=0), (rows ** 2).sum(axis=0)
    return sums


def statistics(sums: Sums) -> Statistics:
    """Mean and standard deviation per feature (floored as ``speakers`` floors them) of the inputs with sound."""
    result = {}
    for key in sums:
        name, _, part = key.rpartition(":")
        if part != "n" or sums[key] < 1:
            continue
        n = float(sums[key])
        mean = sums[f"{name}:sum"] / n
        variance = np.maximum(sums[f"{name}:squares"] / n - mean ** 2, 0.0)
        result[name] = (mean, np.maximum(np.sqrt(variance), 1e-6))
    return result


def calibrated(clips: Arrays, own: Statistics, heard: int, population: Statistics) -> Arrays:
    """``clips`` of a voice aligned with its statistics from ``heard`` clips, shrunk towards the population
    (``speakers.shrunk``): what the service does, and what cross-validation's calibration curve measures."""
    return align_with(clips, shrunk(own, heard, population), population)


def _pack(sums: Sums) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **sums)
    return buffer.getvalue()


def _unpack(blob: bytes) -> Sums:
    with np.load(io.BytesIO(blob)) as data:
        return {key: data[key] for key in data.files}


def _added(old: Sums, new: Sums) -> Sums:
    """``old + new`` per key; inputs only one of them has are kept (a model's inputs may change)."""
    return {key: old.get(key, 0) + new.get(key, 0) for key in old.keys() | new.keys()}


class VoiceBook:
    """The running statistics of named voices, in one SQLite file shared by the processes that serve."""

    def __init__(self, path: str | Path, max_voices: int = MAX_VOICES):
        self.path, self.max_voices = Path(path), max_voices
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS voices (voice TEXT PRIMARY KEY, clips INTEGER NOT NULL, "
                       "sums BLOB NOT NULL, heard REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS voices_heard ON voices (heard)")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (transactions are explicit), closed afterwards."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def hear(self, voice: str, arrays: Arrays) -> tuple[Statistics, int]:
        """Add the clips in ``arrays`` to ``voice``; its statistics afterwards and the clips heard so far."""
        check_voice(voice)
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")  # read, add and write back as one step among all request workers
            try:
                row = db.execute("SELECT clips, sums FROM voices WHERE voice = ?", (voice,)).fetchone()
                clips, sums = (row[0], _unpack(row[1])) if row else (0, {})
                clips, sums = clips + len(arrays), _added(sums, clip_sums(arrays))
                db.execute("INSERT OR REPLACE INTO voices VALUES (?, ?, ?, ?)",
                           (voice, clips, _pack(sums), time.time()))
                if row is None:  # only a new voice can push the book over its bound
                    db.execute("DELETE FROM voices WHERE voice IN (SELECT voice FROM voices ORDER BY heard DESC "
                               "LIMIT -1 OFFSET ?)", (self.max_voices,))
                db.execute("COMMIT")
            except BaseException:
                db.rollback()
                raise
        return statistics(sums), clips

    def clips(self, voice: str) -> int:
        """Clips heard of ``voice`` (0 for a voice never heard or forgotten)."""
        with self._connection() as db:
            row = db.execute("SELECT clips FROM voices WHERE voice = ?", (check_voice(voice),)).fetchone()
        return row[0] if row else 0

    def forget(self, voice: str) -> bool:
        """Drop ``voice``'s statistics; whether there were any."""
        with self._connection() as db:
            return db.execute("DELETE FROM voices WHERE voice = ?", (check_voice(voice),)).rowcount > 0

"""What every corpus adapter shares: its description, the rows it scans, and the batch it writes.

An adapter only *reads* a corpus: its ``scan`` walks the native layout and returns one :class:`Clip`
per usable media file plus a :class:`Skipped` entry for every file or label row it could not use.
:func:`write_batch` then builds the batch folder next to its final place, under a dot-name that
ingestion ignores, and renames it into place only when the media, ``labels.csv`` and ``import.json``
are complete, so an inbox never holds half a batch. Media are copied or hard-linked, never moved.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from affectflow.labels import EMOTIONS, LABELS_FILENAME, affect_of

log = logging.getLogger(__name__)

IMPORT_RECORD = "import.json"
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # the labels suite's rule for store folder names
CONTRACT_ORDER: tuple[str, ...] = ("path", "dataset", "speaker", "emotion", "intensity", "arousal", "valence")

# Common spellings of canonical emotions in corpus label files (RAVDESS, MAFW and user CSVs).
EMOTION_ALIASES: dict[str, str] = {
    "angry": "anger", "happy": "happiness", "sad": "sadness", "fearful": "fear", "scared": "fear",
    "surprised": "surprise", "disgusted": "disgust", "contemptuous": "contempt", "anxious": "anxiety",
    "helpless": "helplessness", "disappointed": "disappointment", "bored": "boredom",
}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Option:
    """One adapter option: ``parse`` turns command-line text into the value; ``choices`` are checked."""

    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()
    flag: bool = False


@dataclass(frozen=True)
class Clip:
    """A usable media file: ``source`` is relative to the corpus folder; ``row`` its label row."""

    source: str
    row: dict[str, Any]


@dataclass(frozen=True)
class Skipped:
    """A file or label row the adapter did not import, and why (relative to the corpus folder)."""

    path: str
    reason: str


@dataclass
class Scan:
    """What an adapter found: clips to import, things skipped, and notes on irregular but used files."""

    clips: list[Clip] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, path: str | Path, reason: str) -> None:
        self.skipped.append(Skipped(str(path), reason))

    def skipped_counts(self) -> dict[str, int]:
        """Skipped entries per reason, most frequent first."""
        return dict(Counter(s.reason for s in self.skipped).most_common())


@dataclass(frozen=True)
class Adapter:
    """A corpus adapter as the CLI and the docs list it; ``name`` is also its default dataset name."""

    name: str
    description: str
    scan: Callable[..., Scan]
    options: Mapping[str, Option] = field(default_factory=dict)
    needs_dataset_name: bool = False


def canonical_emotion(text: str) -> str | None:
    """The canonical name for a label spelled as in the vocabulary or a common alias, else None."""
    key = text.strip().lower()
    return key if key in EMOTIONS else EMOTION_ALIASES.get(key)


def corpus_file(source: Path, chosen: str | None, candidates: tuple[str, ...]) -> Path | None:
    """``chosen`` (relative to ``source`` or absolute), else the first candidate present, else None."""
    if chosen:
        path = source / chosen
        if not path.is_file():
            raise FileNotFoundError(f"file not found: {path}")
        return path
    return next((source / c for c in candidates if (source / c).is_file()), None)


def label_row(path: str, speaker: str, emotion: str, intensity: float = 1.0, **extras: Any) -> dict[str, Any]:
    """A contract row with ``[arousal, valence]`` from the circumplex table (intensity scales arousal)."""
    arousal, valence = affect_of(emotion, intensity)
    return {"path": path, "speaker": speaker, "emotion": emotion, "intensity": intensity,
            "arousal": round(arousal, 4), "valence": round(valence, 4), **extras}


def relative_files(root: Path) -> list[Path]:
    """Every regular file under ``root``, relative to it, in a stable order; hidden files skipped."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder, name).relative_to(root) for name in sorted(files) if not name.startswith(".")]
    return found


def labels_frame(clips: list[Clip], dataset: str) -> pd.DataFrame:
    """Rows in contract column order (path, dataset, speaker, emotion, intensity, arousal, valence, extras)."""
    frame = pd.DataFrame([{**clip.row, "dataset": dataset} for clip in clips])
    extras = [name for name in frame.columns if name not in CONTRACT_ORDER]
    return frame[[name for name in CONTRACT_ORDER if name in frame] + extras]


def _place(source: Path, target: Path, link: bool) -> bool:
    """Hard-link (when asked and possible) or copy ``source`` to ``target``; True when linked."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, target)
            return True
        except OSError:
            pass  # another filesystem or no permission: a copy keeps the same guarantee
    shutil.copy2(source, target)
    return False


def check_target(source: Path, out: Path, dataset: str) -> None:
    """Refuse before any work: a bad dataset name, a missing corpus, an existing or overlapping batch."""
    if not DATASET_NAME.match(dataset):
        raise ValueError(f"dataset name {dataset!r} must use letters, digits, '.', '_' and '-' only")
    if not source.is_dir():
        raise NotADirectoryError(f"corpus folder not found: {source}")
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"{out} already exists; an import never overwrites a batch")
    if out.is_relative_to(source) or source.is_relative_to(out):
        raise ValueError(f"the batch folder {out} and the corpus folder {source} must not contain each other")


def write_batch(adapter: str, scan: Scan, source: Path, out: Path, dataset: str, options: dict[str, Any],
                link: bool = False, progress: Progress | None = None) -> pd.DataFrame:
    """Write the batch folder ``out`` (media, labels.csv, import.json) and return its labels.

    The folder is built as a hidden sibling and renamed into place at the end; on any error the
    hidden folder is removed (it holds only copies or extra links, so the corpus is untouched).
    Call :func:`check_target` first.
    """
    if not scan.clips:
        raise ValueError(f"no usable clips in {source} for adapter {adapter}; skipped: {scan.skipped_counts()}")
    frame = labels_frame(scan.clips, dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".importing", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the batch is an ordinary folder
    try:
        linked = 0
        for done, clip in enumerate(scan.clips, 1):
            linked += _place(source / clip.source, staging / clip.row["path"], link)
            if progress is not None:
                progress(done, len(scan.clips))
        frame.to_csv(staging / LABELS_FILENAME, index=False)
        record = {"adapter": adapter, "dataset": dataset, "source": str(source),
                  "options": {k: v if isinstance(v, str | int | float | bool | dict) or v is None else str(v)
                              for k, v in options.items()},
                  "created_at": datetime.now(UTC).isoformat(), "clips": len(frame),
                  "speakers": int(frame["speaker"].nunique()),
                  "emotions": {str(k): int(v) for k, v in frame["emotion"].value_counts().items()},
                  "linked": linked, "copied": len(frame) - linked,
                  "skipped_counts": scan.skipped_counts(), "notes": scan.notes,
                  "skipped": [asdict(s) for s in scan.skipped]}
        (staging / IMPORT_RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("%s: %d clips, %d speakers, %s -> %s (%d linked, %d copied)", adapter, len(frame),
             frame["speaker"].nunique(), record["emotions"], out, linked, len(frame) - linked)
    if scan.skipped:
        log.warning("%s: skipped %d files or rows: %s (listed in %s)", adapter, len(scan.skipped),
                    scan.skipped_counts(), out / IMPORT_RECORD)
    for note in scan.notes:
        log.warning("%s: %s", adapter, note)
    frame.attrs["import"] = record
    return frame

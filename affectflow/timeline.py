"""Emotion over time in a long video: sliding windows, each preprocessed as a training clip and predicted.

A window of ``window_s`` seconds (default 3, the length of the audio the model hears) starts every ``hop_s``
seconds (default 1). Every window is a full ``window_s`` long: when the windows at multiples of ``hop_s``
leave a tail uncovered, one more window ends at the end of the video (so a 19.7 s video at 3/1 gives
windows from 0-3 to 16-19, then 16.7-19.7: 18 windows); a video shorter than a window is one window.

Each window gets what a clip of that stretch would get in training: ``cfg.num_frames`` frames sampled
uniformly over its frames (``media.sample_indices``) and its audio, turned into model inputs by the same
``features.decoded_features``. The file is read forward once and never whole: frames through
``media.stream_sampled``, audio through one ffmpeg pipe (``media.AudioStream``), so memory is bounded by a
window and a batch of records whatever the length; videos over ``MAX_SECONDS`` are refused before any
decoding. Records go to the model in batches of ``BATCH_WINDOWS``.

A window in which none of the modalities the model uses is found (silence for an audio model) is reported as
unusable with the reason, not given a class. A video in which no window is usable raises
``predict.UnusableClipError``, as ``Predictor.usable_features`` does for one clip.

No BentoML or Prefect here: ``serving/service.py`` (``POST /timeline``) and ``affectflow predict --timeline``
are thin callers. The model side is anything with the model's ``extraction`` config, ``modalities`` and
``card`` (a ``predict.Predictor``), and ``predict`` turns a batch of records into answers as
``Predictor.predict_features`` does (its default), so a caller whose model lives elsewhere (a server's model
process) passes its own.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from affectflow.config import PreprocessConfig
from affectflow.errors import UserError
from affectflow.features import ClipFeatures, decoded_features
from affectflow.media import (
    AudioStream,
    ClipTooLong,
    StreamLayout,
    sample_indices,
    stream_layout,
    stream_sampled,
)
from affectflow.predict import MISSING, ModelCard, UnusableClipError, found_modalities

MAX_SECONDS = 600.0       # the longest video a timeline is made of (10 minutes); longer ones are refused
DEFAULT_WINDOW_S = 3.0
DEFAULT_HOP_S = 1.0
MIN_WINDOW_S, MAX_WINDOW_S = 0.5, 10.0
MIN_HOP_S = 0.5           # at most 1,200 windows in 10 minutes
BATCH_WINDOWS = 16        # windows per model call: as fast as 32 here, 115 MB less at the peak
_EPS = 1e-6


class WindowError(UserError, ValueError):
    """Window or hop lengths that cannot make a timeline."""


class ModelSide(Protocol):
    """What the timeline needs to know of a model (a ``predict.Predictor`` has it)."""

    extraction: PreprocessConfig   # how its clips are preprocessed
    modalities: tuple[str, ...]    # which it uses
    card: ModelCard                # its classes and version


Answers = Callable[[list[ClipFeatures]], list[dict]]  # records -> one answer each, as Predictor.predict_features


def check_windows(window_s: float, hop_s: float) -> None:
    """Raise ``WindowError`` unless ``MIN_WINDOW_S <= window_s <= MAX_WINDOW_S`` and
    ``MIN_HOP_S <= hop_s <= window_s`` (a hop longer than the window would leave stretches unseen)."""
    if not (math.isfinite(window_s) and MIN_WINDOW_S <= window_s <= MAX_WINDOW_S):
        raise WindowError(f"window must be {MIN_WINDOW_S:g} to {MAX_WINDOW_S:g} seconds, not {window_s:g}")
    if not (math.isfinite(hop_s) and MIN_HOP_S <= hop_s <= window_s):
        raise WindowError(f"hop must be {MIN_HOP_S:g} seconds to the window's {window_s:g}, not {hop_s:g}")


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float


def plan_windows(duration_s: float, window_s: float = DEFAULT_WINDOW_S, hop_s: float = DEFAULT_HOP_S) -> list[Window]:
    """The windows over ``duration_s`` seconds: starts at multiples of ``hop_s`` while a whole window fits, then,
    if the end is not yet covered, one more whole window ending at the end; one window when the video is
    shorter than a window."""
    check_windows(window_s, hop_s)
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise WindowError(f"a video of {duration_s:g} seconds has no windows")
    if duration_s <= window_s + _EPS:
        return [Window(0.0, duration_s)]
    count = int(math.floor((duration_s - window_s) / hop_s + _EPS)) + 1
    windows = [Window(round(k * hop_s, 6), round(k * hop_s + window_s, 6)) for k in range(count)]
    if windows[-1].end_s < duration_s - _EPS:
        windows.append(Window(duration_s - window_s, duration_s))
    return windows


def frame_indices(window: Window, fps: float, num_frames: int, count: int) -> np.ndarray:
    """The ``count`` frames sampled from the window's frames (those whose time ``i / fps`` falls in
    ``[start, end)``), as ``read_sampled`` samples a clip."""
    first = min(int(math.ceil(window.start_s * fps - _EPS)), num_frames - 1)
    stop = min(max(int(math.ceil(window.end_s * fps - _EPS)), first + 1), num_frames)
    return first + sample_indices(stop - first, count)


def sample_range(window: Window, sample_rate: int) -> tuple[int, int]:
    """The audio samples ``[start, stop)`` of a window."""
    return int(round(window.start_s * sample_rate)), int(round(window.end_s * sample_rate))


def window_features(path: str | Path, cfg: PreprocessConfig, windows: Sequence[Window],
                    layout: StreamLayout) -> Iterator[ClipFeatures]:
    """Each window's model inputs, in order, from one forward pass over the file."""
    path = Path(path)
    if layout.has_video:
        index_sets = [frame_indices(w, layout.fps, layout.num_frames, cfg.num_frames) for w in windows]
        videos: Iterator = stream_sampled(path, index_sets, max(cfg.face_width, cfg.frame_size), layout.fps)
    else:
        videos = iter([None] * len(windows))
    audio = AudioStream(path, cfg.sample_rate) if layout.has_audio else None
    try:
        for window, video in zip(windows, videos, strict=True):
            sound = audio.segment(*sample_range(window, cfg.sample_rate)) if audio else np.zeros(0, np.float32)
            yield decoded_features(video, sound, path, cfg)
    finally:
        if audio is not None:
            audio.close()
        if hasattr(videos, "close"):
            videos.close()


@dataclass(frozen=True)
class WindowPrediction:
    """One window: its span, what was found in it and, when the model could use it, its prediction."""

    start_s: float
    end_s: float
    found: dict[str, bool]                      # video, audio (not silence), face
    emotion: str | None = None                  # None for an unusable window or a model without classes
    confidence: float | None = None             # the emotion's probability, where the model reports it
    probabilities: dict[str, float] | None = None
    arousal: float | None = None
    valence: float | None = None
    unusable: str | None = None                 # why the model could not judge this window

    def to_dict(self, used: Sequence[str]) -> dict:
        out: dict = {"start": round(self.start_s, 3), "end": round(self.end_s, 3), "usable": self.unusable is None}
        if self.unusable is not None:
            out["reason"] = self.unusable
        for name in ("emotion", "confidence", "probabilities", "arousal", "valence"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out["modalities"] = {"used": list(used), "found": dict(self.found)}
        return out


@dataclass(frozen=True)
class TimelineSummary:
    """Over the usable windows: the dominant emotion (most windows; ties to the higher mean probability),
    each class's share of windows, mean probabilities and mean arousal/valence."""

    windows: int
    usable_windows: int
    emotion: str | None = None
    shares: dict[str, float] = field(default_factory=dict)
    mean_probabilities: dict[str, float] | None = None
    arousal: float | None = None
    valence: float | None = None

    @property
    def unusable_windows(self) -> int:
        return self.windows - self.usable_windows

    def to_dict(self) -> dict:
        out: dict = {"windows": self.windows, "usable_windows": self.usable_windows,
                     "unusable_windows": self.unusable_windows}
        for name in ("emotion", "shares", "mean_probabilities", "arousal", "valence"):
            value = getattr(self, name)
            if value is not None and value != {}:
                out[name] = value
        return out


@dataclass(frozen=True)
class Timeline:
    duration_s: float
    window_s: float
    hop_s: float
    model_version: str
    modalities_used: tuple[str, ...]
    windows: tuple[WindowPrediction, ...]
    summary: TimelineSummary

    def to_dict(self) -> dict:
        return {"duration": round(self.duration_s, 3), "window": self.window_s, "hop": self.hop_s,
                "model_version": self.model_version, "modalities_used": list(self.modalities_used),
                "summary": self.summary.to_dict(),
                "windows": [w.to_dict(self.modalities_used) for w in self.windows]}


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 6) if values else None


def summarise(windows: Sequence[WindowPrediction], classes: Sequence[str]) -> TimelineSummary:
    usable = [w for w in windows if w.unusable is None]
    if not usable:
        return TimelineSummary(len(windows), 0)
    probabilities = None
    if all(w.probabilities is not None for w in usable):
        probabilities = {c: _mean([w.probabilities[c] for w in usable]) for c in classes}
    counts = Counter(w.emotion for w in usable if w.emotion is not None)
    emotion = None
    if counts:
        emotion = max(counts, key=lambda c: (counts[c], (probabilities or {}).get(c, 0.0)))
    shares = {c: round(counts[c] / len(usable), 6) for c in classes if counts[c]}
    return TimelineSummary(len(windows), len(usable), emotion, shares, probabilities,
                           _mean([w.arousal for w in usable if w.arousal is not None]),
                           _mean([w.valence for w in usable if w.valence is not None]))


def _predictions(used: Sequence[str], predict: Answers, windows: Sequence[Window],
                 records: Sequence[ClipFeatures]) -> list[WindowPrediction]:
    """One batch: the model runs on the usable windows only."""
    found = [found_modalities(r) for r in records]
    usable = [i for i, f in enumerate(found) if any(f[m] for m in used)]
    outputs = dict(zip(usable, predict([records[i] for i in usable]) if usable else []))
    why = "; ".join(MISSING[m] for m in used)
    out = []
    for i, (window, seen) in enumerate(zip(windows, found)):
        if i not in outputs:
            out.append(WindowPrediction(window.start_s, window.end_s, seen, unusable=why))
            continue
        result = outputs[i]
        out.append(WindowPrediction(window.start_s, window.end_s, seen, result.get("emotion"),
                                    result.get("confidence"), result.get("probabilities"),
                                    result.get("arousal"), result.get("valence")))
    return out


def timeline(model: ModelSide, path: str | Path, window_s: float = DEFAULT_WINDOW_S,
             hop_s: float = DEFAULT_HOP_S, *, predict: Answers | None = None, batch: int = BATCH_WINDOWS,
             max_seconds: float = MAX_SECONDS, progress: Callable[[int, int], None] | None = None) -> Timeline:
    """The video's timeline. Raises ``WindowError`` for bad window/hop lengths, ``media.ClipTooLong`` for a
    video over ``max_seconds`` (before decoding), other ``MediaError``s for files that do not decode and
    ``UnusableClipError`` when no window holds anything the model uses.

    ``predict``: answers for a batch of at most ``batch`` records (default ``model.predict_features``);
    ``progress(done, total)`` after each batch of windows.
    """
    check_windows(window_s, hop_s)
    if predict is None:
        predict = model.predict_features
    layout = stream_layout(path)
    if layout.duration_s > max_seconds + _EPS:
        raise ClipTooLong(f"{path}: lasts {layout.duration_s:.1f} s, over the {max_seconds:g} s limit of a "
                          "timeline; cut it into parts")
    windows = plan_windows(layout.duration_s, window_s, hop_s)
    results: list[WindowPrediction] = []
    pending: list[ClipFeatures] = []
    with closing(window_features(path, model.extraction, windows, layout)) as records:  # ffmpeg stops on errors
        for record in records:
            pending.append(record)
            if len(pending) == batch or len(results) + len(pending) == len(windows):
                results += _predictions(model.modalities, predict,
                                        windows[len(results):len(results) + len(pending)], pending)
                pending = []
                if progress is not None:
                    progress(len(results), len(windows))
    summary = summarise(results, model.card.classes)
    if not summary.usable_windows:
        raise UnusableClipError(f"{path}: nothing this model can use in any window: "
                                + "; ".join(MISSING[m] for m in model.modalities))
    return Timeline(layout.duration_s, window_s, hop_s, model.card.model_version, tuple(model.modalities),
                    tuple(results), summary)

"""Content-addressed feature cache: a record is keyed by the clip's bytes and the preprocessing config.

Layout: ``<root>/<config-hash>/<clip-sha256>.npz``. Moving or renaming a clip keeps its record; changing
one byte of it, or any config field, makes a new one. Re-running over unchanged clips decodes nothing:
a hit costs one file hash and one full read of the record (~2 ms: every member inflated, so its CRC is checked).

Faults leave nothing broken for good. Records are written atomically (``features.save_features``: a temporary
``.<clip-hash>.*.tmp`` beside the record, then a rename), so a reader sees a whole record or none. A record that
is still unreadable (truncated or damaged on disk, written by another config) is recomputed from its clip and
replaced atomically; the result says ``repaired``. Temporaries left by killed writes are removed when the cache
is next used, once older than ``TEMP_GRACE_S`` (a live write holds its temporary for milliseconds).

``preprocess_paths`` is the command-line entry: clips or folders in, one JSON-ready dict per clip out.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from affectflow.config import PreprocessConfig, get_paths, preprocessing
from affectflow.faces import check_backend
from affectflow.features import ClipFeatures, extract_features, load_features, save_features
from affectflow.media import MediaError

CHUNK_BYTES = 1 << 20
TEMP_GRACE_S = 600.0  # a temporary record older than this belongs to a killed write
Progress = Callable[[int, int], None]
log = logging.getLogger(__name__)

# What reading a damaged record raises (truncated zip, bad CRC, broken deflate stream, missing or malformed
# member); an OSError (permissions, I/O) is not the record's fault and is reported, never "repaired".
DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError)


class DamagedRecordError(ValueError):
    """A record that exists but cannot be used as it is (see ``FeatureCache.verified``)."""


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks so large videos never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class FeatureCache:
    """Feature records of one config under ``root``; ``hits`` and ``computed`` count this instance's work."""

    def __init__(self, root: str | Path, cfg: PreprocessConfig):
        self.root = Path(root)
        self.cfg = cfg
        self.folder = self.root / cfg.hash()
        self.hits = 0
        self.computed = 0

    def path_for(self, clip_hash: str) -> Path:
        return self.folder / f"{clip_hash}.npz"

    def locate(self, clip_path: str | Path) -> tuple[str, Path]:
        """The clip's content hash and where its record lives (whether or not it exists yet)."""
        clip_hash = file_sha256(clip_path)
        return clip_hash, self.path_for(clip_hash)

    def compute(self, clip_path: str | Path, record: Path) -> ClipFeatures:
        """Extract a clip's features and write its record atomically (replacing a damaged one in one step)."""
        features = extract_features(clip_path, self.cfg)
        save_features(record, features)
        self.computed += 1
        return features

    def verified(self, record: Path) -> ClipFeatures:
        """The record read in full (every member inflated and CRC-checked) and stamped with this config;
        ``DamagedRecordError`` when it is not."""
        try:
            features = load_features(record)
        except DAMAGED as err:
            raise DamagedRecordError(f"{type(err).__name__}: {err}") from err
        if features.config_hash != self.cfg.hash():
            raise DamagedRecordError(f"stamped with config {features.config_hash!r}, expected {self.cfg.hash()!r}")
        return features

    def clean_temporaries(self, grace_s: float = TEMP_GRACE_S) -> int:
        """Remove temporaries of killed writes (``<config-hash>/.*.tmp``, every config) older than ``grace_s``;
        returns how many. Younger ones may belong to a write in progress (another process) and stay."""
        if not self.root.is_dir():
            return 0
        removed, cutoff = 0, time.time() - grace_s
        for folder in (entry for entry in os.scandir(self.root) if entry.is_dir(follow_symlinks=False)):
            for entry in os.scandir(folder.path):
                if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                    continue
                try:
                    if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:  # another process cleaned it first
                    continue
        if removed:
            log.warning("feature cache %s: removed %d temporary records left by killed writes", self.root, removed)
        return removed


@dataclass
class ClipResult:
    """What preprocessing did with one clip; a failed clip carries its reason instead of a record."""

    clip: str
    ok: bool
    error: str | None
    record: str | None
    clip_hash: str | None
    frames: int            # real video frames in the record (0 when the clip has no usable video)
    face_frames: int       # sampled frames in which a face was found
    audio_seconds: float   # decoded audio before padding
    cached: bool
    repaired: bool = False  # a damaged record was found and recomputed (or removed, if the clip failed)


def _failure(clip: Path, err: Exception, clip_hash: str | None, repaired: bool = False) -> ClipResult:
    reason = str(err) if isinstance(err, MediaError) else f"{clip}: {type(err).__name__}: {err}"
    return ClipResult(str(clip), False, reason, None, clip_hash, 0, 0, 0.0, False, repaired)


def _success(clip: Path, clip_hash: str, record: Path, features: ClipFeatures, cached: bool,
             cfg: PreprocessConfig, repaired: bool = False) -> ClipResult:
    frames = cfg.num_frames if features.video_mask else 0
    return ClipResult(str(clip), True, None, str(record), clip_hash, frames, int(features.face_present.sum()),
                      float(features.audio_seconds), cached, repaired)


def _process(clip: Path, cache: FeatureCache) -> ClipResult:
    """One clip, never raising: a hit reads its record in full, a miss (or a damaged record) decodes the clip."""
    clip_hash, damaged = None, False
    try:
        clip_hash, record = cache.locate(clip)
        if record.exists():
            try:
                features = cache.verified(record)
            except DamagedRecordError as err:
                damaged = True
                log.warning("feature record %s of %s is damaged (%s): recomputing it", record, clip, err)
            else:
                cache.hits += 1
                return _success(clip, clip_hash, record, features, True, cache.cfg)
        try:
            features = cache.compute(clip, record)
        except Exception:
            if damaged:  # the clip cannot be read now: never leave the damaged record to be read later
                record.unlink(missing_ok=True)
            raise
        return _success(clip, clip_hash, record, features, False, cache.cfg, repaired=damaged)
    except Exception as err:  # any unreadable clip is this clip's result, never the batch's failure
        return _failure(clip, err, clip_hash, repaired=damaged)


def _in_pool(clips: list[Path], cache: FeatureCache, workers: int) -> Iterator[tuple[int, ClipResult]]:
    """Run clips in worker processes, at most two per worker in flight; yields ``(index, result)`` as
    each finishes.

    Workers are spawned (not forked): the caller may hold threads (Prefect, TensorFlow) that a fork
    would copy in a locked state. If a worker dies (a crashing decoder), the clips in flight fail with
    that reason and a fresh pool takes the rest.
    """
    todo = deque(range(len(clips)))
    while todo:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            pending: dict[Future[ClipResult], int] = {}
            broken = False
            while pending or (todo and not broken):
                while todo and not broken and len(pending) < 2 * workers:
                    index = todo.popleft()
                    try:
                        pending[pool.submit(_process, clips[index], cache)] = index
                    except BrokenProcessPool:
                        todo.appendleft(index)
                        broken = True
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    try:
                        result = future.result()
                    except Exception as err:
                        broken = broken or isinstance(err, BrokenProcessPool)
                        result = _failure(clips[index], err, None)
                    yield index, result


def _in_order(clips: list[Path], cache: FeatureCache, workers: int) -> Iterator[ClipResult]:
    """Results in input order, each as soon as it and all before it are done."""
    if workers <= 1:
        yield from (_process(clip, cache) for clip in clips)
        return
    waiting: dict[int, ClipResult] = {}
    next_index = 0
    for index, result in _in_pool(clips, cache, workers):
        waiting[index] = result
        while next_index in waiting:
            yield waiting.pop(next_index)
            next_index += 1


def preprocess_clips(paths: Sequence[str | Path], cache_root: str | Path, cfg: PreprocessConfig,
                     workers: int = 1, progress: Progress | None = None) -> list[ClipResult]:
    """Make sure every clip has a cached record; one result per clip, in input order.

    A clip that cannot be read is reported (``ok=False`` with its reason) and the others go on; a face
    backend that cannot run here raises ``faces.FaceBackendError`` before any clip is read.
    ``progress(done, total)`` is called after each clip. Damaged records are recomputed (``repaired``) and
    leftovers of killed writes removed first; both are counted in a warning log line.
    """
    check_backend(cfg.face_backend)
    clips = [Path(p) for p in paths]
    cache = FeatureCache(cache_root, cfg)
    cache.clean_temporaries()
    results = []
    for result in _in_order(clips, cache, workers):
        results.append(result)
        if progress:
            progress(len(results), len(clips))
    _log_repairs(results)
    return results


def _log_repairs(results: Sequence[ClipResult]) -> None:
    repaired = sum(r.repaired for r in results)
    if repaired:
        log.warning("feature cache: %d damaged records found; %d recomputed, %d removed (their clips failed)",
                    repaired, sum(r.repaired and r.ok for r in results), sum(r.repaired and not r.ok for r in results))


MEDIA_SUFFIXES = frozenset({".mp4", ".flv", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                            ".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus"})


def expand_clips(paths: Iterable[str | Path]) -> list[Path]:
    """Clips named directly (kept as given, so a missing or odd file is reported, not skipped) plus the
    media files under named folders (by suffix, sorted, hidden entries skipped)."""
    clips: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            clips.append(path)
            continue
        clips.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(path).parts)))
    return clips


def _line(result: ClipResult) -> dict:
    return {"clip": result.clip, "ok": result.ok, "error": result.error, "frames": result.frames,
            "face_frames": result.face_frames, "audio_seconds": round(result.audio_seconds, 3),
            "cached": result.cached, "repaired": result.repaired, "record": result.record}


def _report(clips: list[Path], cache: FeatureCache, workers: int,
            inspect_dir: Path | None) -> Iterator[dict]:
    started = time.perf_counter()
    temporaries = cache.clean_temporaries()
    results = []
    for result in _in_order(clips, cache, workers):
        results.append(result)
        line = _line(result)
        if inspect_dir is not None and result.ok:
            from affectflow.inspect_outputs import write_inspection

            clip = Path(result.clip)
            line["inspection"] = write_inspection(clip, load_features(result.record), inspect_dir, cache.cfg,
                                                  name=f"{clip.stem}-{result.clip_hash[:8]}")
        yield line
    _log_repairs(results)
    ok = [r for r in results if r.ok]
    yield {"summary": True, "clips": len(results), "ok": len(ok), "failed": len(results) - len(ok),
           "cached": sum(r.cached for r in ok), "computed": sum(not r.cached for r in ok),
           "repaired": sum(r.repaired for r in results), "temporaries_removed": temporaries,
           "face_frames": sum(r.face_frames for r in ok), "face_backend": cache.cfg.face_backend,
           "config_hash": cache.cfg.hash(), "cache": str(cache.folder),
           "seconds": round(time.perf_counter() - started, 3)}


def preprocess_paths(paths: Sequence[str | Path], cfg: PreprocessConfig | None = None,
                     cache_root: str | Path | None = None, workers: int = 1,
                     inspect_dir: str | Path | None = None) -> Iterator[dict]:
    """Fill the cache for clips and folders of clips: one dict per clip, in order, then a summary dict.

    Per clip: ``clip, ok, error, frames, face_frames, audio_seconds, cached, repaired, record`` (plus
    ``inspection``, the written files, when ``inspect_dir`` is given). The summary has ``summary: true``,
    the counts, ``repaired`` (damaged records recomputed or removed) and ``temporaries_removed``.
    ``cfg`` defaults to ``config.preprocessing()``; a face backend that cannot run here raises
    ``faces.FaceBackendError`` now, before any clip is read.
    """
    cfg = cfg or preprocessing()
    check_backend(cfg.face_backend)
    cache = FeatureCache(cache_root if cache_root is not None else get_paths().features, cfg)
    return _report(expand_clips(paths), cache, workers, Path(inspect_dir) if inspect_dir is not None else None)

"""Content-addressed feature cache: a record is keyed by the clip's bytes and the preprocessing config.

Layout: ``<root>/<config-hash>/<clip-sha256>.npz``. Moving or renaming a clip keeps its record; changing
one byte of it, or any config field, makes a new one. Re-running over unchanged clips decodes nothing:
a hit costs one file hash and one full read of the record (~2 ms: every member inflated, so its CRC is checked).

Faults leave nothing broken for good. Records are written atomically (``features.save_features``: a temporary
``.<clip-hash>.*.tmp`` beside the record, then a rename), so a reader sees a whole record or none. A record that
is still unreadable (truncated or damaged on disk, written by another config) is recomputed from its clip and
replaced atomically; the result says ``repaired``. Temporaries left by killed writes are removed when the cache
is next used, once older than ``TEMP_GRACE_S`` (a live write holds its temporary for milliseconds).

``preprocess_clips`` (results) and ``preprocess_paths`` (JSON-ready lines and a summary, for the command line)
compute missing records in this process, or in chunks (``preprocess_chunk``) wherever the caller's ``run`` sends
them: ``tasks.preprocess`` maps them as Prefect tasks on local threads or a Dask cluster. Workers are
given absolute paths, so the clips and the cache root must be at the same path on every machine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
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
    """Feature records of one config under ``root``."""

    def __init__(self, root: str | Path, cfg: PreprocessConfig):
        self.root = Path(root)
        self.cfg = cfg
        self.folder = self.root / cfg.hash()

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


def preprocess_chunk(clips: Sequence[str | Path], cache_root: str | Path, cfg: PreprocessConfig) -> list[ClipResult]:
    """One unit of work for a task runner's worker: each clip's result, in order, never raising for a clip.

    Paths must be absolute (a worker may run in another folder or on another machine that mounts the same
    storage at the same path)."""
    cache = FeatureCache(cache_root, cfg)
    return [_process(Path(clip), cache) for clip in clips]


Chunks = Iterator[tuple[int, list[ClipResult]]]
# Runs clips and yields ``(index of the first clip, results of consecutive clips)`` in any order, every clip once:
# ``in_process`` here, or chunks on a Prefect task runner (``tasks.preprocess.on_task_runner``).
ChunkRunner = Callable[[list[Path], Path, PreprocessConfig], Chunks]


def in_process(clips: list[Path], cache_root: Path, cfg: PreprocessConfig) -> Chunks:
    """Clips one after another in this process (one result per step, for progress)."""
    for index, clip in enumerate(clips):
        yield index, preprocess_chunk([clip], cache_root, cfg)


def preprocess_clips(paths: Sequence[str | Path], cache_root: str | Path, cfg: PreprocessConfig,
                     progress: Progress | None = None, run: ChunkRunner = in_process) -> list[ClipResult]:
    """Make sure every clip has a cached record; one result per clip, in input order.

    A clip that cannot be read is reported (``ok=False`` with its reason) and the others go on; a face
    backend that cannot run here raises ``faces.FaceBackendError`` before any clip is read.
    ``progress(done, total)`` is called as results arrive. ``run`` decides where clips are computed (this
    process by default; a flow passes ``tasks.preprocess.on_task_runner``). Damaged records are recomputed
    (``repaired``) and leftovers of killed writes removed first; both are counted in a warning log line.
    """
    check_backend(cfg.face_backend)
    FeatureCache(cache_root, cfg).clean_temporaries()
    return _filled(paths, cache_root, cfg, progress, run)


def _filled(paths: Sequence[str | Path], cache_root: str | Path, cfg: PreprocessConfig, progress: Progress | None,
            run: ChunkRunner) -> list[ClipResult]:
    given = [str(Path(p)) for p in paths]
    results: list[ClipResult | None] = [None] * len(given)
    done = 0
    for start, chunk in run([Path(os.path.abspath(p)) for p in given], Path(os.path.abspath(cache_root)), cfg):
        for offset, result in enumerate(chunk):
            results[start + offset] = replace(result, clip=given[start + offset])
        done += len(chunk)
        if progress:
            progress(done, len(given))
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


def preprocess_paths(paths: Sequence[str | Path], cfg: PreprocessConfig | None = None,
                     cache_root: str | Path | None = None, inspect_dir: str | Path | None = None,
                     run: ChunkRunner = in_process, progress: Progress | None = None) -> list[dict]:
    """Fill the cache for clips and folders of clips: one dict per clip, in order, then a summary dict.

    Per clip: ``clip, ok, error, frames, face_frames, audio_seconds, cached, repaired, record`` (plus
    ``inspection``, the written files, when ``inspect_dir`` is given). The summary has ``summary: true``,
    the counts, ``repaired`` (damaged records recomputed or removed) and ``temporaries_removed``.
    ``cfg`` defaults to ``config.preprocessing()``; a face backend that cannot run here raises
    ``faces.FaceBackendError`` now, before any clip is read. ``run`` and ``progress``: as ``preprocess_clips``.
    """
    started = time.perf_counter()
    cfg = cfg or preprocessing()
    check_backend(cfg.face_backend)
    cache = FeatureCache(cache_root if cache_root is not None else get_paths().features, cfg)
    temporaries = cache.clean_temporaries()
    results = _filled(expand_clips(paths), cache.root, cfg, progress, run)
    lines = [_line(result) for result in results]
    if inspect_dir is not None:
        from affectflow.inspect_outputs import write_inspection

        for line, result in zip(lines, results):
            if result.ok:
                clip = Path(result.clip)
                line["inspection"] = write_inspection(clip, load_features(result.record), Path(inspect_dir), cfg,
                                                      name=f"{clip.stem}-{result.clip_hash[:8]}")
    ok = [r for r in results if r.ok]
    return [*lines, {
        "summary": True, "clips": len(results), "ok": len(ok), "failed": len(results) - len(ok),
        "cached": sum(r.cached for r in ok), "computed": sum(not r.cached for r in ok),
        "repaired": sum(r.repaired for r in results), "temporaries_removed": temporaries,
        "face_frames": sum(r.face_frames for r in ok), "face_backend": cfg.face_backend,
        "config_hash": cfg.hash(), "cache": str(cache.folder), "seconds": round(time.perf_counter() - started, 3)}]

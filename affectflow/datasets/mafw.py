"""MAFW: ``clips/NNNNN.mp4`` plus the single-expression label file (11 classes).

The label file (``caption-label/single_label.txt`` in the release; the official fold lists
``set_K/train.txt`` have the same first two fields) holds one clip per line:
``03747.mp4  anger  <br>Chinese caption <br> English caption``. Clips missing from it carry only a
compound (multi-emotion) label and are reported, not imported.

MAFW publishes no speaker identities (clips come from films and shows), so each clip is its own
speaker group: splits are clip-independent, not person-independent.
"""

from __future__ import annotations

from pathlib import Path

from affectflow.datasets.base import (
    Adapter,
    Clip,
    Option,
    Scan,
    Skipped,
    canonical_emotion,
    corpus_file,
    label_row,
    relative_files,
)

CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
                            "contempt", "anxiety", "helplessness", "disappointment")
LABEL_FILES: tuple[str, ...] = ("caption-label/single_label.txt", "single_label.txt", "labels/single_label.txt",
                                "Labels/single_label.txt", "label/single_label.txt")
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm"})


def _labels(path: Path, result: Scan) -> dict[str, tuple[str, str]]:
    """Clip stem -> (label, caption) from the label file; bad lines are reported."""
    labels: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        fields = line.split(maxsplit=2)
        if not fields:
            continue
        where = f"{path.name}:{number}"
        if len(fields) < 2:
            result.skip(where, "label line has no label")
        elif Path(fields[0]).stem in labels:
            result.skip(where, f"clip {fields[0]} is listed more than once")
        else:
            parts = fields[2].split("<br>") if len(fields) > 2 else []
            caption = " / ".join(p.strip() for p in parts if p.strip())
            labels[Path(fields[0]).stem] = (fields[1], caption)
    return labels


def scan(source: Path, label_file: str | None = None) -> Scan:
    """One clip per labelled video found anywhere under ``source``."""
    result = Scan()
    path = corpus_file(source, label_file, LABEL_FILES)
    if path is None:
        raise FileNotFoundError(f"no MAFW label file in {source} (looked for {', '.join(LABEL_FILES)})")
    labels = _labels(path, result)
    videos: dict[str, list[Path]] = {}
    for relative in relative_files(source):
        if relative.suffix.lower() in VIDEO_SUFFIXES:
            videos.setdefault(relative.stem, []).append(relative)
    for stem, found in sorted(videos.items()):
        if stem not in labels:
            result.skip(found[0], f"not in {path.name} (no single-emotion label)")
        elif len(found) > 1:
            result.skip(found[0], f"{len(found)} videos share this clip name: {', '.join(map(str, found))}")
        elif canonical_emotion(labels[stem][0]) not in CLASSES:
            result.skip(found[0], f"label {labels[stem][0]!r} is not one of the 11 MAFW classes")
        else:
            emotion, caption = canonical_emotion(labels[stem][0]), labels[stem][1]
            row = label_row(found[0].as_posix(), stem, emotion, caption=caption or None)
            result.clips.append(Clip(found[0].as_posix(), row))
    result.skipped += [Skipped(f"{path.name}: {stem}", "labelled clip has no video file")
                       for stem in sorted(set(labels) - set(videos))]
    result.notes.append("MAFW has no speaker identities: each clip is its own speaker group")
    return result


ADAPTER = Adapter(
    name="mafw",
    description="MAFW: clips/*.mp4 + single_label.txt, 11 classes, speaker = clip (no identities published)",
    scan=scan,
    options={"label_file": Option("single-expression label file (default: caption-label/single_label.txt)")},
)

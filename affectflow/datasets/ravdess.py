"""RAVDESS: files named ``MM-VV-EE-II-SS-RR-AA.mp4|.wav`` (e.g. ``Actor_01/01-01-03-02-01-01-01.mp4``).

Modality ``MM`` (01 full audio-video, 02 video only, 03 audio only), vocal channel ``VV`` (01 speech,
02 song), emotion ``EE``, intensity ``II`` (01 normal, 02 strong), statement ``SS``, repetition
``RR``, actor ``AA`` (odd male, even female). One take exists in up to three modalities, so one
modality is imported per batch: by default (``auto``) full audio-video where the folder has it, else the
only modality it holds (the speech-only distribution is audio, ``03``).
"""

from __future__ import annotations

import re
from pathlib import Path

from affectflow.datasets.base import Adapter, Clip, Option, Scan, label_row, relative_files

NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.(mp4|wav)$", re.IGNORECASE)
MODALITIES: dict[str, str] = {"full-av": "01", "video": "02", "audio": "03"}
EMOTIONS: dict[str, str] = {"01": "neutral", "02": "calm", "03": "happiness", "04": "sadness", "05": "anger",
                            "06": "fear", "07": "disgust", "08": "surprise"}
INTENSITY: dict[str, float] = {"01": 1.0, "02": 1.5}
CHANNELS: dict[str, str] = {"01": "speech", "02": "song"}
STATEMENTS: dict[str, str] = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
ACTOR_FOLDER = re.compile(r"^actor_(\d+)$", re.IGNORECASE)


def _reason(relative: Path, wanted: str) -> str | None:
    """Why a file is not a clip of the chosen modality, or None when it is one."""
    match = NAME.match(relative.name)
    if match is None:
        return "name is not MM-VV-EE-II-SS-RR-AA.mp4/.wav"
    modality, channel, emotion, intensity, statement, _, actor, _ = match.groups()
    if modality != wanted:
        known = {code: name for name, code in MODALITIES.items()}
        return f"modality {modality} ({known.get(modality, 'unknown')}) not selected"
    if (emotion not in EMOTIONS or intensity not in INTENSITY or channel not in CHANNELS
            or statement not in STATEMENTS):
        return "unknown code in the file name"
    folders = [ACTOR_FOLDER.match(part) for part in relative.parts[:-1]]
    if any(folder and int(folder[1]) != int(actor) for folder in folders):
        return f"file name says actor {actor} but its folder is another actor's"
    return None


def _present(files: list[Path]) -> str:
    """``auto``'s choice: full-av where any file is, else the one modality the files hold."""
    codes = {match[1] for match in map(NAME.match, (f.name for f in files)) if match}
    by_code = {code: name for name, code in MODALITIES.items()}
    if MODALITIES["full-av"] in codes or len(codes) != 1 or next(iter(codes)) not in by_code:
        return "full-av"
    return by_code[next(iter(codes))]


def scan(source: Path, modality: str = "auto") -> Scan:
    """One clip per file of the chosen modality; other modalities and stray files are reported."""
    result = Scan()
    files = relative_files(source)
    modality = _present(files) if modality == "auto" else modality
    for relative in files:
        reason = _reason(relative, MODALITIES[modality])
        if reason is not None:
            result.skip(relative, reason)
            continue
        _, channel, emotion, intensity, statement, repetition, actor, _ = NAME.match(relative.name).groups()
        row = label_row(relative.as_posix(), actor, EMOTIONS[emotion], INTENSITY[intensity],
                        vocal_channel=CHANNELS[channel], statement=STATEMENTS[statement],
                        repetition=int(repetition), modality=modality,
                        sex="male" if int(actor) % 2 else "female")
        result.clips.append(Clip(relative.as_posix(), row))
    return result


ADAPTER = Adapter(
    name="ravdess",
    description="RAVDESS: MM-VV-EE-II-SS-RR-AA.mp4/.wav, 8 emotions, intensity normal/strong, speaker = actor",
    scan=scan,
    options={"modality": Option("which recordings to import: full-av (01), video (02) or audio (03); auto "
                                "(default): full-av where present, else the only one the folder holds",
                                choices=("auto", *MODALITIES))},
)

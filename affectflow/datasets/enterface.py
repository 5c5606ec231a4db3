"""eNTERFACE'05: ``subject N/<emotion>/sentence K/sN_EE_K.avi`` (six emotions, 42-44 subjects).

The public copy is not regular: some subjects keep the videos directly in the emotion folder (no
``sentence K`` level), some sentence folders hold another folder, and stray files sit beside the
videos. So each ``.avi`` is read on its own: the subject comes from the ``subject N`` folder (or the
file name), the emotion from the emotion folder (or the file-name code), the sentence from the
``sentence K`` folder (or the file name). A video whose folder and file name disagree is skipped and
reported rather than guessed; irregular but unambiguous videos are imported and counted in a note.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from affectflow.datasets.base import Adapter, Clip, Scan, canonical_emotion, label_row, relative_files

EMOTIONS: dict[str, str] = {"an": "anger", "di": "disgust", "fe": "fear", "ha": "happiness", "sa": "sadness",
                            "su": "surprise"}
NAME = re.compile(r"^s_?(\d+)_([a-z]{2})_(\d+)$", re.IGNORECASE)
SUBJECT = re.compile(r"^subject[ _-]*(\d+)$", re.IGNORECASE)
SENTENCE = re.compile(r"^sentence[ _-]*(\d+)$", re.IGNORECASE)


def _from_folders(folders: tuple[str, ...]) -> dict[str, set[str]]:
    return {"subject": {str(int(m[1])) for m in map(SUBJECT.match, folders) if m},
            "emotion": {e for e in map(canonical_emotion, folders) if e},
            "sentence": {str(int(m[1])) for m in map(SENTENCE.match, folders) if m}}


def _fields(relative: Path) -> tuple[dict[str, str | None], list[str], list[str]]:
    """Subject, emotion and sentence of one video, the errors that make it unusable, and irregularities."""
    folders = relative.parts[:-1]
    candidates = _from_folders(folders)
    regular = (len(folders) >= 3 and SUBJECT.match(folders[-3]) and canonical_emotion(folders[-2])
               and SENTENCE.match(folders[-1]))
    irregular = [] if regular else ["layout is not subject N/<emotion>/sentence K/"]
    errors = []
    name = NAME.match(relative.stem)
    if name is None:
        irregular.append("file name is not sN_EE_K.avi")
    elif name[2].lower() not in EMOTIONS:
        errors.append(f"unknown emotion code {name[2]!r} in the file name")
    else:
        candidates["subject"].add(str(int(name[1])))
        candidates["emotion"].add(EMOTIONS[name[2].lower()])
        candidates["sentence"].add(str(int(name[3])))
    fields: dict[str, str | None] = {}
    for key, values in candidates.items():
        if len(values) > 1:
            errors.append(f"folders and file name disagree on the {key}: {', '.join(sorted(values))}")
        fields[key] = next(iter(values)) if len(values) == 1 else None
    if not errors and (fields["subject"] is None or fields["emotion"] is None):
        errors.append("no subject or emotion in the folders or the file name")
    elif not errors and fields["emotion"] not in EMOTIONS.values():
        errors.append(f"{fields['emotion']} is not one of the six eNTERFACE emotions")
    return fields, errors, irregular


def scan(source: Path) -> Scan:
    """One clip per ``.avi`` whose subject and emotion are known and consistent."""
    result, irregular = Scan(), Counter()
    for relative in relative_files(source):
        if relative.suffix.lower() != ".avi":
            result.skip(relative, "not an .avi video")
            continue
        fields, errors, notes = _fields(relative)
        if errors:
            result.skip(relative, "; ".join(errors))
            continue
        irregular.update(notes)
        extras = {"sentence": int(fields["sentence"]) if fields["sentence"] else None}
        row = label_row(relative.as_posix(), fields["subject"], fields["emotion"], **extras)
        result.clips.append(Clip(relative.as_posix(), row))
    result.notes += [f"imported despite an irregular path ({count} videos): {what}"
                     for what, count in irregular.most_common()]
    return result


ADAPTER = Adapter(
    name="enterface",
    description="eNTERFACE'05: subject N/<emotion>/sentence K/*.avi, 6 emotions, irregular folders reported",
    scan=scan,
)

"""EmoDB (Berlin Database of Emotional Speech): audio-only ``SSTTTEV.wav`` files, in any sub-folder.

``SS`` speaker, ``TTT`` text id (a01..a07, b01..b10), ``E`` emotion (German initial), ``V`` version.
"""

from __future__ import annotations

import re
from pathlib import Path

from affectflow.datasets.base import Adapter, Clip, Scan, label_row, relative_files

NAME = re.compile(r"^(\d{2})([ab]\d{2})([A-Z])([a-z])\.wav$")
EMOTIONS: dict[str, str] = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness",
                            "T": "sadness", "N": "neutral"}
# From the corpus documentation (Burkhardt et al. 2005): the ten speakers' sex.
SEX: dict[str, str] = {"03": "male", "08": "female", "09": "female", "10": "male", "11": "male", "12": "male",
                       "13": "female", "14": "female", "15": "male", "16": "female"}


def scan(source: Path) -> Scan:
    """One clip per ``SSTTTEV.wav``; other files are reported."""
    result = Scan()
    for relative in relative_files(source):
        match = NAME.match(relative.name)
        if match is None:
            result.skip(relative, "name is not SSTTTEV.wav")
        elif match[3] not in EMOTIONS:
            result.skip(relative, f"unknown emotion code {match[3]}")
        else:
            speaker, text, code, version = match.groups()
            row = label_row(relative.as_posix(), speaker, EMOTIONS[code], text=text, version=version,
                            sex=SEX.get(speaker))
            result.clips.append(Clip(relative.as_posix(), row))
    return result


ADAPTER = Adapter(
    name="emodb",
    description="EmoDB (Berlin): audio-only SSTTTEV.wav, 7 emotions, speaker = SS",
    scan=scan,
)

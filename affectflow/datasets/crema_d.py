"""CREMA-D: ``VideoFlash/AAAA_SSS_EEE_LL.flv`` or ``AudioWAV/AAAA_SSS_EEE_LL.wav``, plus its metadata.

``AAAA`` actor (the speaker), ``SSS`` sentence code, ``EEE`` acted emotion, ``LL`` level. Optional
metadata beside the media: ``summaryTable.csv`` (crowd votes per modality; also found under
``processedResults/``), ``VideoDemographics.csv`` (age, sex, race, ethnicity per actor) and
``SentenceFilenames.csv`` (the clip list, used to report clips that are listed but absent).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from affectflow.datasets.base import Adapter, Clip, Option, Scan, corpus_file, label_row

NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
EMOTIONS: dict[str, str] = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness",
                            "NEU": "neutral", "SAD": "sadness"}
# Acted level -> intensity (1.0 = the corpus's ordinary level; unspecified XX counts as medium).
LEVEL_INTENSITY: dict[str, float] = {"LO": 0.5, "MD": 1.0, "HI": 1.5, "XX": 1.0}
# Crowd vote letters of summaryTable.csv.
VOTE_LETTERS: dict[str, str] = {"A": "anger", "D": "disgust", "F": "fear", "H": "happiness", "N": "neutral",
                                "S": "sadness"}
MEDIA: dict[str, tuple[str, str]] = {"video": ("VideoFlash", ".flv"), "audio": ("AudioWAV", ".wav")}
VOTES: dict[str, str] = {"multimodal": "MultiModalVote", "voice": "VoiceVote", "face": "FaceVote"}
VOTE_COLUMNS: dict[str, str] = {"VoiceVote": "voice_vote", "VoiceLevel": "voice_level", "FaceVote": "face_vote",
                                "FaceLevel": "face_level", "MultiModalVote": "multimodal_vote",
                                "MultiModalLevel": "multimodal_level"}
DEMOGRAPHIC_COLUMNS: dict[str, str] = {"Age": "age", "Sex": "sex", "Race": "race", "Ethnicity": "ethnicity"}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def vote_agreement(acted: str, vote: str) -> float:
    """1/n when the acted emotion is one of the n tied majority votes (``"N:S"``), else 0."""
    voted = [VOTE_LETTERS.get(letter, letter) for letter in vote.split(":") if letter]
    return round(1.0 / len(voted), 4) if acted in voted else 0.0


def _crowd(source: Path, chosen: str | None, vote: str) -> dict[str, dict]:
    path = corpus_file(source, chosen, ("summaryTable.csv", "processedResults/summaryTable.csv"))
    if path is None:
        return {}
    table = _read(path).set_index("FileName")
    columns = table[list(VOTE_COLUMNS)].rename(columns=VOTE_COLUMNS)
    columns["perceived_emotion"] = [";".join(VOTE_LETTERS.get(v, v) for v in text.split(":"))
                                    for text in table[VOTES[vote]]]
    return columns.to_dict("index")


def _demographics(source: Path, chosen: str | None) -> dict[str, dict]:
    path = corpus_file(source, chosen, ("VideoDemographics.csv",))
    if path is None:
        return {}
    table = _read(path).set_index("ActorID")
    return table[list(DEMOGRAPHIC_COLUMNS)].rename(columns=DEMOGRAPHIC_COLUMNS).to_dict("index")


def _listed(source: Path) -> set[str]:
    path = source / "SentenceFilenames.csv"
    return set(_read(path)["Filename"]) if path.is_file() else set()


def _reason(path: Path, suffix: str) -> str | None:
    """Why a file of the media folder is not a clip, or None when it is one."""
    match = NAME.match(path.stem)
    if path.suffix.lower() != suffix or not path.is_file():
        return f"not a {suffix} file"
    if match is None:
        return "name is not AAAA_SSS_EEE_LL"
    if match[3] not in EMOTIONS or match[4] not in LEVEL_INTENSITY:
        return f"unknown emotion or level code {match[3]}_{match[4]}"
    return None


def scan(source: Path, modality: str = "video", min_agreement: float | None = None, vote: str = "multimodal",
         summary_table: str | None = None, demographics: str | None = None) -> Scan:
    """One clip per media file named ``AAAA_SSS_EEE_LL``; crowd votes and demographics as extra columns."""
    folder, suffix = MEDIA[modality]
    if not (source / folder).is_dir():
        raise FileNotFoundError(f"CREMA-D {modality} media are expected in {source / folder}")
    crowd, people = _crowd(source, summary_table, vote), _demographics(source, demographics)
    if min_agreement is not None and not (crowd and 0.0 <= min_agreement <= 1.0):
        raise ValueError(f"min_agreement needs summaryTable.csv and a value in [0, 1] (got {min_agreement}, "
                         f"summary table {'found' if crowd else 'not found'})")
    result, found, unvoted, unknown_actors = Scan(), set(), 0, set()
    for path in sorted((source / folder).iterdir()):
        shown = f"{folder}/{path.name}"
        reason = _reason(path, suffix)
        if reason is not None:
            result.skip(shown, reason)
            continue
        found.add(path.stem)
        actor, sentence, code, level = NAME.match(path.stem).groups()
        emotion, votes = EMOTIONS[code], crowd.get(path.stem)
        unvoted += bool(crowd) and votes is None
        agreement = vote_agreement(emotion, votes[f"{vote}_vote"]) if votes else None
        if min_agreement is not None and (agreement or 0.0) < min_agreement:
            result.skip(shown, "no row in summaryTable.csv" if votes is None else
                        f"{vote} crowd vote agrees less than {min_agreement} with the acted emotion")
            continue
        if people and actor not in people:
            unknown_actors.add(actor)
        extras = {"sentence": sentence, "level": level, **(votes or {}), "vote_agreement": agreement,
                  **people.get(actor, dict.fromkeys(DEMOGRAPHIC_COLUMNS.values()))}
        result.clips.append(Clip(shown, label_row(shown, actor, emotion, LEVEL_INTENSITY[level], **extras)))
    if unvoted:
        result.notes.append(f"{unvoted} clips have no row in summaryTable.csv: their vote columns are empty")
    if unknown_actors:
        result.notes.append(f"actors without a row in VideoDemographics.csv (demographics empty): "
                            f"{', '.join(sorted(unknown_actors))}")
    absent = sorted(_listed(source) - found)
    if absent:
        result.notes.append(f"{len(absent)} clips listed in SentenceFilenames.csv have no {suffix} file in "
                            f"{folder}/ (first: {', '.join(absent[:5])})")
    return result


ADAPTER = Adapter(
    name="crema-d",
    description="CREMA-D: VideoFlash/*.flv or AudioWAV/*.wav named AAAA_SSS_EEE_LL, "
                "with crowd votes and demographics",
    scan=scan,
    options={
        "modality": Option("which media to import: video (VideoFlash/*.flv) or audio (AudioWAV/*.wav)",
                           choices=tuple(MEDIA)),
        "min_agreement": Option("drop clips whose crowd vote agrees less with the acted emotion "
                                "(1 = sole majority vote, 0.5 = two-way tie, 0 = keep all)", parse=float),
        "vote": Option("which crowd vote the agreement uses", choices=tuple(VOTES)),
        "summary_table": Option("summaryTable.csv path (default: found beside the media)"),
        "demographics": Option("VideoDemographics.csv path (default: found beside the media)"),
    },
)

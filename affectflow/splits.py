"""Speaker-independent splits: no speaker is ever on two sides."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


class SplitLeakError(AssertionError):
    """A speaker appears in more than one split."""


def speaker_split(speakers: pd.Series, test_fraction: float, val_fraction: float, seed: int) -> pd.Series:
    """Assign whole speakers to train/val/test (seeded shuffle of the sorted speaker list).

    Fractions are of speakers; test and val get at least one speaker each and train keeps at least one.
    Returns a Series aligned with ``speakers``.
    """
    unique = np.array(sorted(speakers.astype(str).unique()))
    if len(unique) < 3:
        raise ValueError(f"speaker-independent train/val/test needs >= 3 speakers, got {len(unique)}")
    order = np.random.default_rng(seed).permutation(unique)
    n_test = max(1, int(round(test_fraction * len(unique))))
    n_val = max(1, int(round(val_fraction * len(unique))))
    n_test = min(n_test, len(unique) - 2)
    n_val = min(n_val, len(unique) - n_test - 1)
    side = {s: "test" for s in order[:n_test]}
    side.update({s: "val" for s in order[n_test:n_test + n_val]})
    side.update({s: "train" for s in order[n_test + n_val:]})
    result = speakers.astype(str).map(side)
    check_speaker_independence(speakers, result)
    return result


def check_speaker_independence(speakers: pd.Series, split: pd.Series) -> None:
    """Raise ``SplitLeakError`` naming every speaker found on more than one side."""
    sides = pd.DataFrame({"speaker": speakers.astype(str), "split": split}).groupby("speaker")["split"].nunique()
    leaked = sorted(sides[sides > 1].index)
    if leaked:
        raise SplitLeakError(f"speakers on more than one side of the split: {leaked}")


def speaker_folds(speakers: pd.Series, emotions: pd.Series, k: int, seed: int,
                  strata: pd.Series | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` seeded (train, test) positional index pairs; each speaker is tested in exactly one fold.

    Folds are grouped by speaker and stratified by emotion as far as whole speakers allow
    (scikit-learn's ``StratifiedGroupKFold``); with ``strata`` (one value per speaker, e.g. sex) by
    stratum and emotion together, so each fold holds the strata in proportion (RAVDESS, 16 actors in 4
    folds: 2 female and 2 male actors each, whatever the seed; by emotion alone a fold can hold 4 men).
    Each fold is checked for leaks.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = speakers.astype(str).to_numpy()
    if k < 2 or len(set(groups)) < k:
        raise ValueError(f"{k}-fold speaker-independent splits need k >= 2 and >= k speakers, "
                         f"got {len(set(groups))}")
    target = emotions.astype(str)
    if strata is not None:
        target = strata.astype(str).to_numpy() + "|" + target.to_numpy()
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    result = []
    for train, test in folds.split(np.zeros(len(groups)), np.asarray(target), groups):
        side = pd.Series("train", index=speakers.index)
        side.iloc[test] = "test"
        check_speaker_independence(speakers, side)
        result.append((train, test))
    return result


def speaker_strata(frame: pd.DataFrame, column: str = "sex") -> pd.Series | None:
    """``frame[column]`` when it names one known value per speaker and more than one overall (what
    ``speaker_folds`` and validation speakers balance), else None."""
    if column not in frame or frame[column].isna().any():
        return None
    values = frame[column].astype(str)
    per_speaker = values.groupby(frame["speaker"].astype(str)).nunique()
    return values if (per_speaker == 1).all() and values.nunique() > 1 else None

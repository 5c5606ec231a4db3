"""Speaker-independent splits."""

import numpy as np
import pandas as pd
import pytest

from affectflow.crossval import val_speakers
from affectflow.splits import (
    SplitLeakError,
    check_speaker_independence,
    speaker_folds,
    speaker_split,
    speaker_strata,
)


def speakers(n_speakers: int, per: int = 5) -> pd.Series:
    return pd.Series([f"s{i}" for i in range(n_speakers) for _ in range(per)])


@pytest.mark.parametrize("n", [3, 4, 8, 20])
def test_every_side_has_speakers_and_none_is_shared(n):
    spk = speakers(n)
    split = speaker_split(spk, test_fraction=0.3, val_fraction=0.2, seed=1)
    assert set(split) == {"train", "val", "test"}
    assert (pd.DataFrame({"s": spk, "p": split}).groupby("s")["p"].nunique() == 1).all()


def test_split_is_deterministic_and_seeded():
    spk = speakers(10)
    a = speaker_split(spk, 0.3, 0.2, seed=5)
    assert a.equals(speaker_split(spk.sample(frac=1, random_state=0).sort_index(), 0.3, 0.2, seed=5))
    assert not a.equals(speaker_split(spk, 0.3, 0.2, seed=6))


def test_too_few_speakers_is_a_clear_error():
    with pytest.raises(ValueError, match="needs >= 3 speakers"):
        speaker_split(speakers(2), 0.3, 0.2, seed=0)


def test_leak_is_reported_by_speaker():
    with pytest.raises(SplitLeakError, match="s1"):
        check_speaker_independence(pd.Series(["s0", "s1", "s1"]), pd.Series(["train", "train", "test"]))


def corpus(n_speakers: int, per: int = 12) -> tuple[pd.Series, pd.Series]:
    """Each speaker acts every one of three emotions ``per / 3`` times."""
    spk = speakers(n_speakers, per)
    return spk, pd.Series(["anger", "calm", "fear"] * (len(spk) // 3))


@pytest.mark.parametrize("n, k", [(5, 5), (10, 3), (9, 4)])
def test_folds_test_each_speaker_once_and_never_share_one(n, k):
    spk, emo = corpus(n)
    folds = speaker_folds(spk, emo, k=k, seed=3)
    assert len(folds) == k
    tested = [set(spk.iloc[test]) for _, test in folds]
    assert sorted(s for group in tested for s in group) == sorted(spk.unique())  # once each
    for train, test in folds:
        assert not set(spk.iloc[train]) & set(spk.iloc[test])
        assert sorted(np.concatenate([train, test])) == list(range(len(spk)))
        assert set(emo.iloc[test]) == {"anger", "calm", "fear"}  # stratified: every class tested


def test_folds_are_seeded():
    spk, emo = corpus(10)
    tests = [[set(spk.iloc[t]) for _, t in speaker_folds(spk, emo, k=3, seed=seed)] for seed in (1, 1, 2)]
    assert tests[0] == tests[1] and tests[0] != tests[2]


def test_too_few_speakers_for_k_folds_is_a_clear_error():
    spk, emo = corpus(3)
    with pytest.raises(ValueError, match="need k >= 2 and >= k speakers, got 3"):
        speaker_folds(spk, emo, k=4, seed=0)


def ravdess_like() -> pd.DataFrame:
    """16 actors (odd male, even female), each acting 8 emotions; neutral half as often."""
    rows = [(f"{a:02d}", "male" if a % 2 else "female", str(e))
            for a in range(1, 17) for e in range(8) for _ in range(4 if e == 0 else 8)]
    return pd.DataFrame(rows, columns=["speaker", "sex", "emotion"])


@pytest.mark.parametrize("seed", [13, 14, 15, 1, 2])
def test_folds_hold_the_sexes_in_proportion_whatever_the_seed(seed):
    frame = ravdess_like()
    folds = speaker_folds(frame["speaker"], frame["emotion"], k=4, seed=seed, strata=speaker_strata(frame))
    for _, test in folds:
        tested = frame.iloc[test].drop_duplicates("speaker")
        assert sorted(tested["sex"]) == ["female", "female", "male", "male"]


def test_strata_are_used_only_when_known_for_every_speaker_and_varied():
    frame = ravdess_like()
    assert speaker_strata(frame).equals(frame["sex"])
    assert speaker_strata(frame.drop(columns="sex")) is None
    assert speaker_strata(frame.assign(sex="female")) is None            # one stratum balances nothing
    assert speaker_strata(frame.assign(sex=frame["sex"].where(frame.index > 0))) is None  # one unknown
    two_sexes = frame.assign(sex=np.where(frame.index % 2, "male", "female"))  # a speaker recorded as both
    assert speaker_strata(two_sexes) is None


def test_validation_speakers_alternate_strata():
    sex = {f"{a:02d}": "male" if a % 2 else "female" for a in range(1, 13)}
    for seed in range(10):
        chosen = val_speakers(list(sex), 0.2, seed, strata=sex)
        assert len(chosen) == 3 and {sex[s] for s in chosen} == {"female", "male"}
        assert chosen == val_speakers(list(sex), 0.2, seed, strata=sex)

"""Speaker-independent splits."""

import pandas as pd
import pytest

from affectflow.splits import SplitLeakError, check_speaker_independence, speaker_split


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

"""Cross-validation with augmented copies on real speech: copies join each fold's training side only."""

from dataclasses import replace

import pandas as pd
import pytest
from support import shared_data

from affectflow.cache import preprocess_clips
from affectflow.config import ConfigError, PreprocessConfig, TrainConfig
from affectflow.crossval import cross_validate

pytestmark = pytest.mark.slow

CFG = PreprocessConfig(audio_features="mfcc", face_backend="none", audio_seconds=2.0)
CODES = {"W": "anger", "N": "neutral", "T": "sadness"}  # EmoDB's emotion letter, 6th character of the name
CONFIG = replace(TrainConfig(), epochs=3, min_epochs=0, hidden_units=16, batch_size=8, task="classification",
                 audio_encoder="stats", augment=1, refit=True)


def _speech(tmp_path) -> pd.DataFrame:
    folder = shared_data("emodb")
    if not folder.is_dir():
        pytest.skip("needs ../shared/data/emodb (real speech)")
    clips = [c for speaker in ("03", "08", "09", "10", "11", "12")
             for c in [c for c in sorted(folder.glob(f"{speaker}*.wav")) if c.name[5] in CODES][:4]]
    results = preprocess_clips(clips, tmp_path / "features", CFG)
    return pd.DataFrame({"path": [str(c) for c in clips], "record": [r.record for r in results],
                         "speaker": [c.name[:2] for c in clips], "emotion": [CODES[c.name[5]] for c in clips]})


def test_each_fold_trains_on_its_clips_and_their_copies_and_tests_only_real_clips(tmp_path):
    frame = _speech(tmp_path)
    cv = cross_validate(frame, CONFIG, k=3, progress=lambda _: None, preprocess=CFG)
    assert sorted(cv.predictions["record"]) == sorted(frame["record"])  # copies are never tested
    for fold in cv.folds:
        training_clips = len(frame) - fold.n_test - fold.n_val
        assert fold.n_train == 2 * training_clips  # each training clip and its one copy
    with pytest.raises(ConfigError, match="preprocessing config"):
        cross_validate(frame, CONFIG, k=3, progress=lambda _: None)

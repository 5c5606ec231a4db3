"""The real corpora of ../shared/data through adapter, validation, ingest and the feature cache: RAVDESS speech
(two actors) and the six original CREMA-D clips with face and voice. Generated trees test the adapters' rules;
these show the stages hold on the corpora's own files (real names, FLV/VP6 video, MP3 and WAV audio)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from support import shared_data

from affectflow.cache import preprocess_clips
from affectflow.config import Paths, PreprocessConfig
from affectflow.datasets import import_dataset
from affectflow.features import load_features
from affectflow.ingest import ingest_inbox, load_dataset

pytestmark = pytest.mark.slow

AUDIO = PreprocessConfig(face_backend="none")
FACES = PreprocessConfig(num_frames=8)  # the built-in landmarks backend, as the fast face tests run it


def voiced(record) -> bool:
    """Real speech: the audio mask on (not silent, ``features.SILENCE``) and a spectrum that varies over time
    by tens of dB, as no constant padding or decoding noise floor does."""
    return record.audio_mask == 1.0 and np.ptp(record.logmel) > 40 and record.mfcc.std(axis=0).mean() > 1


def test_real_ravdess_speech(tmp_path: Path, home: Paths) -> None:
    corpus = shared_data("ravdess-speech")
    source = tmp_path / "RAVDESS"
    for actor in ("Actor_02", "Actor_07"):  # a woman and a man; actor 07 has one recording under two names
        shutil.copytree(corpus / actor, source / actor)

    frame = import_dataset("ravdess", source, home.inbox / "ravdess", link=True, modality="audio")
    assert len(frame) == 120 and frame.attrs["import"]["skipped"] == []
    assert frame.groupby("speaker")["sex"].agg(set).to_dict() == {"02": {"female"}, "07": {"male"}}
    assert frame["emotion"].nunique() == 8

    [result] = ingest_inbox(home)
    assert (result.status, result.n_clips, result.n_new) == ("accepted", 120, 119)  # the twin counts once
    stored = load_dataset("ravdess", home)
    assert len(stored) == 119 and set(stored["vocal_channel"]) == {"speech"}
    assert stored.groupby("speaker")["sex"].agg(set).to_dict() == {"02": {"female"}, "07": {"male"}}

    clips = stored.groupby("emotion").head(1).head(3)  # three emotions
    results = preprocess_clips(list(clips["path"]), home.features, AUDIO)
    assert all(r.ok and not r.cached and r.frames == 0 for r in results), [r.error for r in results]
    assert all(2.5 < r.audio_seconds < 5.5 for r in results)  # the corpus's 2.9-5.3 s, decoded whole
    for r in results:
        record = load_features(r.record)
        assert record.video_mask == 0.0 and voiced(record)
    assert all(r.cached for r in preprocess_clips(list(clips["path"]), home.features, AUDIO))


def test_real_crema_d_clips_with_face_and_voice(home: Paths) -> None:
    corpus = shared_data("crema-d")
    frame = import_dataset("crema-d", corpus, home.inbox / "crema-d", link=True)
    assert len(frame) == 6 and frame.attrs["import"]["skipped"] == []
    assert set(frame["emotion"]) == {"anger", "disgust", "fear", "happiness", "neutral", "sadness"}

    [result] = ingest_inbox(home)
    assert (result.status, result.n_clips, result.n_new) == ("accepted", 6, 6)
    stored = load_dataset("crema-d", home)
    assert set(stored["speaker"]) == {"1001"}
    assert stored[["sex", "age"]].drop_duplicates().values.tolist() == [["Male", "51"]]  # VideoDemographics.csv
    assert stored["multimodal_vote"].notna().all()  # summaryTable.csv

    clips = stored[stored["emotion"].isin(["anger", "neutral"])]
    results = preprocess_clips(list(clips["path"]), home.features, FACES)
    assert all(r.ok for r in results), [r.error for r in results]
    for r in results:  # FLV with VP6 video and MP3 audio decoded; the actor's face found in most frames
        assert r.frames == FACES.num_frames and r.face_frames >= 6 and 1.8 < r.audio_seconds < 2.4, r
        record = load_features(r.record)
        assert record.video_mask == 1.0 and voiced(record)
        assert record.frames.std() > 10  # a picture, not a blank frame

"""``affectflow train`` and ``affectflow evaluate`` for every corpus adapter and task mode.

Each corpus gets a small tree in its native layout (real clips: ffmpeg test patterns and tones): import
-> ingest -> the train flow -> ``affectflow evaluate`` on a second import from speakers the model never
saw. What is asserted is that the whole path works and reports over every clip, not accuracy (two epochs).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from affectflow.config import TrainConfig
from affectflow.datasets import import_dataset
from affectflow.datasets.csv_mapping import parse_mapping
from affectflow.ingest import ingest_batch
from cli.main import main

pytestmark = pytest.mark.slow

EMOTIONS = ("anger", "sadness")
TONES = {"anger": 660, "sadness": 220}  # the class is audible: training has something to find


def crema_d(clip: Callable, root: Path, speakers: range) -> dict:
    codes = {"anger": "ANG", "sadness": "SAD"}
    for s in speakers:
        for k, sentence in enumerate(("IEO", "DFA")):
            for emotion in EMOTIONS:
                clip(root, f"VideoFlash/{1001 + s}_{sentence}_{codes[emotion]}_XX.flv", emotion, k)
    return {}


def enterface(clip: Callable, root: Path, speakers: range) -> dict:
    for s in speakers:
        for k in (1, 2):
            for emotion in EMOTIONS:
                clip(root, f"subject {s + 1}/{emotion}/sentence {k}/s{s + 1}_{emotion[:2]}_{k}.avi", emotion, k)
    return {}


def mafw(clip: Callable, root: Path, speakers: range) -> dict:
    lines = []
    for s in speakers:
        for k in (1, 2):
            for j, emotion in enumerate(EMOTIONS):
                name = f"{100 * s + 10 * k + j:05d}.mp4"
                clip(root, f"clips/{name}", emotion, k)
                lines.append(f"{name}  {emotion}")
    (root / "single_label.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {}


def ravdess(clip: Callable, root: Path, speakers: range) -> dict:
    codes = {"anger": "05", "sadness": "04"}
    for s in speakers:
        for k in (1, 2):
            for emotion in EMOTIONS:
                clip(root, f"Actor_{s + 1:02d}/01-01-{codes[emotion]}-01-01-{k:02d}-{s + 1:02d}.mp4", emotion, k)
    return {}


def emodb(clip: Callable, root: Path, speakers: range) -> dict:
    codes = {"anger": "W", "sadness": "T"}
    for s in speakers:
        for k in (1, 2):
            for emotion in EMOTIONS:
                clip(root, f"{s + 3:02d}a0{k}{codes[emotion]}a.wav", emotion, k, video=False)
    return {}


def user_csv(clip: Callable, root: Path, speakers: range) -> dict:
    rows = ["file,label,actor"]
    for s in speakers:
        for k in (1, 2):
            for emotion in EMOTIONS:
                relative = f"p{s}/{emotion}{k}.mp4"
                clip(root, relative, emotion, k)
                rows.append(f"{relative},{emotion[0].upper()},p{s}")
    (root / "meta.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"label_file": "meta.csv", "columns": parse_mapping("path=file,emotion=label,speaker=actor"),
            "emotions": parse_mapping("A=anger,S=sadness")}


CORPORA = {  # adapter -> (tree builder, task mode): every adapter, every task mode at least once
    "crema-d": (crema_d, "multitask"), "enterface": (enterface, "classification"), "mafw": (mafw, "regression"),
    "ravdess": (ravdess, "multitask"), "emodb": (emodb, "classification"), "csv": (user_csv, "regression"),
}


@pytest.fixture
def clip(make_clip) -> Callable:
    """A real clip whose tone tells its class; each clip a little different (identical files would be
    one clip to the content-addressed store)."""
    offsets = itertools.count()

    def _clip(root: Path, relative: str, emotion: str, take: int, video: bool = True) -> Path:
        return make_clip(relative, seconds=0.6, size=(48, 48), folder=root, video=video,
                         freq=TONES[emotion] + 15 * take + 2 * next(offsets))
    return _clip


@pytest.mark.parametrize("adapter", list(CORPORA))
def test_train_and_evaluate_on_every_corpus(adapter, prefect_harness, home, tmp_path, clip):
    from flows.train import train_flow

    build, task = CORPORA[adapter]
    options = build(clip, tmp_path / "corpus", range(6))
    import_dataset(adapter, tmp_path / "corpus", home.inbox / "batch-1", dataset="corpus", **options)
    assert ingest_batch(home.inbox / "batch-1", home).status == "accepted"

    summary = train_flow(dataset="corpus", training=TrainConfig(task=task, epochs=2), package=False,
                         home=str(home.home))
    assert summary["registered"] == "models:/affectflow-corpus/1"
    assert summary["metrics"]["n"] > 0

    options = build(clip, tmp_path / "unseen", range(6, 8))  # two speakers the model never heard
    unseen = import_dataset(adapter, tmp_path / "unseen", tmp_path / "unseen-batch", dataset="corpus", **options)
    out = io.StringIO()  # not capsys: Prefect's log handler keeps the stream it first saw, across tests
    with contextlib.redirect_stdout(out):
        main(["--home", str(home.home), "evaluate", "--model", summary["registered"], "--data",
              str(tmp_path / "unseen-batch"), "--by", "speaker"])
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert result["n"] == len(unseen) and result["skipped"] == 0
    expected = {"uar", "war", "macro_f1"} if task != "regression" else set()
    expected |= {"ccc_arousal", "ccc_valence"} if task != "classification" else set()
    assert expected <= set(result), result
    assert sum(g["n"] for g in result["groups"]) == len(unseen)

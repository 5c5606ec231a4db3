"""Metrics per speaker and sex of a model trained on real EmoDB speech."""

import shutil
from dataclasses import replace

from support import shared_data

from affectflow.arrays import load_arrays
from affectflow.breakdown import break_down
from affectflow.cache import preprocess_clips
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.datasets import import_dataset
from affectflow.evaluation import batch_arrays
from affectflow.labels import labelled_frame
from affectflow.predict import ModelCard, Predictor
from affectflow.training import train


def test_real_batch_metrics_by_speaker_and_sex(home, tmp_path):
    """A real EmoDB batch (two speakers, anger vs sadness) scored per speaker and per sex."""
    source = tmp_path / "corpus"
    source.mkdir()
    for wav in sorted(shared_data("emodb").glob("*.wav")):
        if wav.name[:2] in ("09", "10") and wav.name[5] in "WT":
            shutil.copy(wav, source / wav.name)
    batch = tmp_path / "batch"
    labels = import_dataset("emodb", source, batch)
    classes = ("anger", "sadness")
    cfg = PreprocessConfig()
    frame = labelled_frame(labels.assign(path=[str(batch / p) for p in labels["path"]]), classes)
    frame["record"] = [r.record for r in preprocess_clips(list(frame["path"]), home.features, cfg)]
    arrays = load_arrays(frame, classes)
    config = replace(TrainConfig(), epochs=3, hidden_units=8, audio_encoder="stats")
    model = train(arrays, arrays, classes, config, progress=lambda _: None).model
    predictor = Predictor(model, ModelCard(classes, cfg, config.task))

    rows, ready, problems = batch_arrays(predictor, batch, home, align_speakers=True)
    assert not problems and len(rows) == len(labels)
    table = break_down(model, rows, ready, classes, ["speaker", "sex"], ablation=False).groups
    assert table[table["group"] == "speaker"]["value"].tolist() == ["09", "10"]  # ids kept as text
    sexes = table[table["group"] == "sex"].set_index("value")["n"].to_dict()
    assert sexes == labels["sex"].value_counts().to_dict() and set(sexes) == {"female", "male"}
    assert table["uar"].between(0, 1).all()

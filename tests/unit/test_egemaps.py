"""openSMILE's functional sets (eGeMAPS, ComParE): config and cache key, extraction from the real utterance, records,
the model's inputs, speaker alignment of the clip-level vector, prediction through the same extraction, the CLI
option."""

from __future__ import annotations

import inspect
import re
from dataclasses import replace

import numpy as np
import pytest
from support import shared_data

from affectflow.arrays import Arrays, offered_inputs
from affectflow.config import PreprocessConfig, TrainConfig, preprocessing
from affectflow.errors import ConfigError
from affectflow.features import (
    EGEMAPS_SIZE,
    OPTIONAL_ARRAYS,
    blank_features,
    extract_features,
    fit_length,
    functionals,
    load_features,
    save_features,
    stack_inputs,
)
from affectflow.media import read_audio
from affectflow.model import EMOTION_OUTPUT, build_model, input_names
from affectflow.predict import MODEL_FILENAME, ModelCard, Predictor
from affectflow.speakers import align_speakers, audio_statistics, population_of
from cli.main import build_parser

EGEMAPS = PreprocessConfig(audio_features="egemaps", face_backend="none")
BOTH = replace(EGEMAPS, audio_features="mfcc+egemaps")
CLASSES = ("anger", "neutral", "sadness")


def _emodb_clips(n: int) -> list:
    return sorted(shared_data("emodb").glob("*.wav"))[:n]


def test_the_feature_set_is_checked_and_mfcc_alone_keeps_the_hash_it_had_before_the_option():
    mfcc = PreprocessConfig(audio_features="mfcc")
    assert mfcc.hash() == "cbaa00953a7f87dc"  # the pinned MFCC config: existing caches stay valid
    assert PreprocessConfig().audio_features == "mfcc+egemaps+compare"  # the default, chosen by cross-validation
    old = {k: v for k, v in mfcc.to_dict().items() if k != "audio_features"}
    assert PreprocessConfig.from_dict(old) == mfcc  # a card from before the option had MFCC only
    sets = ("mfcc", "egemaps", "mfcc+egemaps", "compare", "mfcc+compare")
    assert len({PreprocessConfig(audio_features=s).hash() for s in sets}) == 5
    assert (EGEMAPS.mfcc, EGEMAPS.functionals, BOTH.mfcc, BOTH.functionals) == (False, ("egemaps",), True, ("egemaps",))
    assert PreprocessConfig(audio_features="mfcc+compare").functionals == ("compare",)
    assert preprocessing("none", audio_features="egemaps") == EGEMAPS
    for wrong in ("opensmile", "egemaps+mfcc", ""):
        with pytest.raises(ConfigError, match=re.escape(f"unknown audio feature set '{wrong}': choose one of {', '.join(sets)}")):
            preprocessing(audio_features=wrong)


def test_egemaps_of_a_real_clip_come_from_its_utterance_not_the_padded_window():
    clip = _emodb_clips(1)[0]  # 2.0 s of speech; the MFCC window is 3 s
    record = extract_features(clip, EGEMAPS)
    assert record.egemaps.shape == (EGEMAPS_SIZE,) and record.egemaps.dtype == np.float32
    assert np.isfinite(record.egemaps).all() and np.count_nonzero(record.egemaps) > 80
    assert record.audio_mask == 1.0 and record.mfcc.shape == (0, EGEMAPS.n_mfcc)  # no MFCC frames asked for
    audio = read_audio(clip, EGEMAPS.sample_rate)
    np.testing.assert_allclose(record.egemaps, functionals(audio, EGEMAPS.sample_rate), rtol=1e-5)
    padded = functionals(fit_length(audio, EGEMAPS.audio_samples), EGEMAPS.sample_rate)
    assert not np.allclose(record.egemaps, padded, rtol=1e-3)  # padding zeros would have changed them
    both = extract_features(clip, BOTH)
    np.testing.assert_array_equal(both.egemaps, record.egemaps)
    assert both.mfcc.shape == (BOTH.audio_steps, BOTH.n_mfcc)
    assert extract_features(clip, replace(EGEMAPS, audio_features="mfcc")).egemaps.shape == (0,)
    compare = extract_features(clip, replace(EGEMAPS, audio_features="mfcc+compare"))
    assert compare.compare.shape == (6373,) and compare.egemaps.shape == (0,) and compare.mfcc.size
    assert np.isfinite(compare.compare).all() and np.count_nonzero(compare.compare) > 6000
    np.testing.assert_allclose(compare.compare, functionals(audio, EGEMAPS.sample_rate, "compare"), rtol=1e-5)
    assert {"compare", "mfcc"} <= set(offered_inputs(compare)) and "egemaps" not in offered_inputs(compare)


def test_a_video_without_audio_gets_zero_egemaps_with_audio_mask_0(make_clip):
    record = extract_features(make_clip("mute.mp4", seconds=1.0, audio=False), EGEMAPS)
    assert record.audio_mask == 0.0 and record.video_mask == 1.0
    np.testing.assert_array_equal(record.egemaps, np.zeros(EGEMAPS_SIZE, np.float32))
    np.testing.assert_array_equal(blank_features(BOTH).egemaps, np.zeros(EGEMAPS_SIZE, np.float32))


def test_records_keep_egemaps_and_older_records_still_load(tmp_path):
    record = blank_features(BOTH)
    record.egemaps = np.arange(EGEMAPS_SIZE, dtype=np.float32)
    save_features(tmp_path / "new.npz", record)
    np.testing.assert_array_equal(load_features(tmp_path / "new.npz").egemaps, record.egemaps)
    with np.load(tmp_path / "new.npz") as data:  # a record written before eGeMAPS existed
        np.savez(tmp_path / "old.npz", **{k: data[k] for k in data.files if k not in OPTIONAL_ARRAYS})
    old = load_features(tmp_path / "old.npz")
    assert old.egemaps.shape == (0,)
    assert "egemaps" not in offered_inputs(old) and "mfcc" in offered_inputs(old)
    assert {"egemaps", "mfcc", "logmel"} <= set(offered_inputs(record))
    only = offered_inputs(blank_features(EGEMAPS))
    assert "egemaps" in only and not {"mfcc", "mfcc_deltas", "logmel"} & set(only)


def _voices(seed: int = 0) -> Arrays:
    """Three speakers whose eGeMAPS have their own offset and scale; every fourth clip has no audio."""
    rng = np.random.default_rng(seed)
    speakers = np.repeat(["s0", "s1", "s2"], 8)
    offset, scale = np.repeat([-3.0, 0.0, 5.0], 8)[:, None], np.repeat([0.5, 1.0, 3.0], 8)[:, None]
    audio = (np.arange(24) % 4 != 0).astype("float32")[:, None]
    egemaps = (rng.normal(size=(24, EGEMAPS_SIZE)) * scale + offset) * audio
    inputs = {"egemaps": egemaps.astype("float32"), "audio_mask": audio}
    return Arrays(inputs, np.arange(24) % 3, np.zeros((24, 2), "float32"), speakers)


def test_each_speakers_egemaps_are_mapped_onto_the_population():
    arrays = _voices()
    population = audio_statistics(arrays)
    assert set(population) == {"egemaps"}
    aligned = align_speakers(arrays, population)
    for speaker in ("s0", "s1", "s2"):
        mean, std = audio_statistics(aligned, aligned.speakers == speaker)["egemaps"]
        np.testing.assert_allclose(mean, population["egemaps"][0], atol=1e-4)
        np.testing.assert_allclose(std, population["egemaps"][1], rtol=1e-4)
    silent = arrays.inputs["audio_mask"][:, 0] == 0
    np.testing.assert_array_equal(aligned.inputs["egemaps"][silent], 0.0)  # clips without audio stay zeros
    model = build_model(CLASSES, {"egemaps": (EGEMAPS_SIZE,), "audio_mask": (1,)}, TrainConfig(hidden_units=8),
                        samples=aligned.inputs)
    read_back = population_of(model)["egemaps"]  # the normaliser saw only the clips with audio
    np.testing.assert_allclose(read_back[0], population["egemaps"][0], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(read_back[1], population["egemaps"][1], rtol=1e-3)


@pytest.mark.parametrize("cfg,expected", [
    (replace(EGEMAPS, audio_features="mfcc"), {"mfcc", "mfcc_deltas", "logmel", "audio_mask"}),
    (EGEMAPS, {"egemaps", "audio_mask"}),
    (BOTH, {"mfcc", "mfcc_deltas", "logmel", "egemaps", "audio_mask"}),
    (replace(EGEMAPS, audio_features="mfcc+compare"), {"mfcc", "mfcc_deltas", "logmel", "compare", "audio_mask"}),
])
def test_the_model_takes_the_inputs_of_its_feature_set(cfg, expected):
    record = blank_features(cfg)
    audio = [n for n in offered_inputs(record) if n in expected]
    shapes = {name: array.shape[1:] for name, array in stack_inputs([record], audio).items()}
    model = build_model(CLASSES, shapes, TrainConfig(hidden_units=8))
    assert set(input_names(model)) == expected
    names = [layer.name for layer in model.layers]
    assert [name for name in ("egemaps", "compare") if f"{name}_embedding" in names] == list(cfg.functionals)
    assert set(population_of(model)) == {"mfcc", "mfcc_deltas", "logmel", *cfg.functionals} & expected  # aligned
    if "compare" in cfg.functionals:  # 6373 functionals against a few hundred clips: regularised harder
        assert model.get_layer("compare_dropout").rate == 0.5 and model.get_layer("compare_embedding").kernel_regularizer


def test_the_audio_mask_gates_the_egemaps_branch():
    arrays = _voices()
    model = build_model(CLASSES, {"egemaps": (EGEMAPS_SIZE,), "audio_mask": (1,)}, TrainConfig(hidden_units=8),
                        samples=arrays.inputs)
    silent = {"egemaps": arrays.inputs["egemaps"][:2], "audio_mask": np.zeros((2, 1), "float32")}
    noisy = {**silent, "egemaps": np.full((2, EGEMAPS_SIZE), 50.0, "float32")}
    np.testing.assert_allclose(np.asarray(model(silent)[EMOTION_OUTPUT]), np.asarray(model(noisy)[EMOTION_OUTPUT]),
                               atol=1e-6)


def test_a_predictor_of_an_egemaps_model_extracts_and_predicts_a_clip(tmp_path):
    clips = _emodb_clips(4)
    records = [extract_features(clip, EGEMAPS) for clip in clips]
    inputs = stack_inputs(records, ("egemaps", "audio_mask"))
    model = build_model(CLASSES, {k: v.shape[1:] for k, v in inputs.items()}, TrainConfig(hidden_units=8),
                        samples=inputs)
    model.save(tmp_path / MODEL_FILENAME)
    predictor = Predictor.from_dir(tmp_path, ModelCard(CLASSES, EGEMAPS, "multitask"))
    assert predictor.extraction.audio_features == "egemaps" and predictor.modalities == ("audio",)
    predictor.warm_up()
    answer = predictor.predict_clip(clips[0])
    assert answer["emotion"] in CLASSES and answer["modalities"]["used"] == ["audio"]
    direct = np.asarray(model({k: v[:1] for k, v in inputs.items()})[EMOTION_OUTPUT])[0]
    np.testing.assert_allclose(list(answer["probabilities"].values()), direct, atol=1e-5)


def test_the_cli_passes_the_feature_set_to_preprocessing_and_the_flows():
    parse = build_parser().parse_args
    assert parse(["train", "--dataset", "x"]).audio_features == "mfcc+egemaps+compare"
    assert parse(["train", "--dataset", "x", "--audio-features", "egemaps"]).audio_features == "egemaps"
    assert parse(["preprocess", "a.wav", "--audio-features", "mfcc"]).audio_features == "mfcc"
    assert parse(["train", "--dataset", "x", "--audio-features", "mfcc+compare"]).audio_features == "mfcc+compare"
    with pytest.raises(SystemExit):
        parse(["train", "--dataset", "x", "--audio-features", "opensmile"])
    from flows.crossval import crossval_flow
    from flows.train import train_flow

    for flow in (train_flow, crossval_flow):
        assert inspect.signature(flow.fn).parameters["audio_features"].default == "mfcc+egemaps+compare"

"""Packing clip inputs into one row per clip and the model's outputs back, as the batched service does."""

import numpy as np
import pytest

from affectflow.arrays import TRAINING_INPUTS
from affectflow.config import PreprocessConfig
from affectflow.features import blank_features, stack_inputs
from affectflow.packed import Layout, pack, pack_outputs, unpack, unpack_outputs


def test_inputs_survive_packing_exactly_in_their_dtypes():
    cfg = PreprocessConfig()
    layout = Layout.of(TRAINING_INPUTS, cfg)
    rng = np.random.default_rng(0)
    records = [blank_features(cfg) for _ in range(3)]
    inputs = stack_inputs(records, TRAINING_INPUTS)
    inputs = {k: (rng.integers(0, 256, v.shape).astype(v.dtype) if v.dtype == np.uint8
                  else rng.normal(size=v.shape).astype(v.dtype)) for k, v in inputs.items()}
    packed = pack(inputs, layout)
    assert packed.shape == (3, layout.width) and packed.dtype == np.float32
    back = unpack(packed, layout)
    assert list(back) == list(TRAINING_INPUTS)
    for name, array in inputs.items():
        assert back[name].dtype == array.dtype
        np.testing.assert_array_equal(back[name], array)
    # Rows of separate requests joined by the batcher unpack as one batch.
    joined = unpack(np.concatenate([pack({k: v[:1] for k, v in inputs.items()}, layout), packed[1:]]), layout)
    np.testing.assert_array_equal(joined["mfcc"], inputs["mfcc"])
    with pytest.raises(ValueError, match="expected"):
        unpack(packed[:, :-1], layout)


@pytest.mark.parametrize("task", ["classification", "regression", "multitask"])
def test_outputs_round_trip_for_each_task(task):
    outputs = {}
    if task != "regression":
        outputs["emotion"] = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], np.float32)
    if task != "classification":
        outputs["affect"] = np.array([[0.1, -0.4], [0.7, 0.2]], np.float32)
    back = unpack_outputs(pack_outputs(outputs), task, num_classes=3)
    assert set(back) == set(outputs)
    for name, array in outputs.items():
        np.testing.assert_array_equal(back[name], array)

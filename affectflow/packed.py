"""Many clips' model inputs as one float32 matrix, and the model's outputs as another.

BentoML's adaptive batching joins the requests of a batchable API along one axis of one argument. The
service's request workers therefore send each clip's inputs as one row (``pack``), the model process joins
the rows of concurrent requests into one batch, calls the model once, and answers one row of outputs per
clip (``pack_outputs``), which the request worker reads back (``unpack_outputs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from affectflow.config import PreprocessConfig
from affectflow.features import blank_features, stack_inputs
from affectflow.model import AFFECT_OUTPUT, EMOTION_OUTPUT, output_heads


@dataclass(frozen=True)
class Layout:
    """Where each input sits in a packed row: name -> (shape of one clip's array, dtype), in model input order."""

    inputs: tuple[tuple[str, tuple[int, ...], str], ...]

    @classmethod
    def of(cls, inputs: Sequence[str], extraction: PreprocessConfig) -> Layout:
        """The layout of a model taking ``inputs`` of clips preprocessed with ``extraction``."""
        one = stack_inputs([blank_features(extraction)], inputs)
        return cls(tuple((name, one[name].shape[1:], str(one[name].dtype)) for name in inputs))

    @property
    def width(self) -> int:
        return sum(int(np.prod(shape)) for _, shape, _ in self.inputs)


def pack(inputs: Mapping[str, np.ndarray], layout: Layout) -> np.ndarray:
    """``(n, layout.width)`` float32: each clip's arrays flattened and laid side by side (uint8 frames are
    exact in float32)."""
    n = len(next(iter(inputs.values())))
    return np.concatenate([inputs[name].reshape(n, -1).astype(np.float32) for name, _, _ in layout.inputs], axis=1)


def unpack(matrix: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """The inverse of ``pack``: arrays by input name, in their own shapes and dtypes."""
    if matrix.ndim != 2 or matrix.shape[1] != layout.width:
        raise ValueError(f"packed inputs of shape {matrix.shape}, expected (n, {layout.width})")
    arrays, start = {}, 0
    for name, shape, dtype in layout.inputs:
        size = int(np.prod(shape))
        arrays[name] = matrix[:, start:start + size].reshape(len(matrix), *shape).astype(dtype, copy=False)
        start += size
    return arrays


def pack_outputs(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(n, k + 2)`` float32: the emotion probabilities (``k`` classes), then arousal and valence, for the
    heads the model has."""
    return np.concatenate([np.asarray(outputs[name], np.float32) for name in (EMOTION_OUTPUT, AFFECT_OUTPUT)
                           if name in outputs], axis=1)


def unpack_outputs(matrix: np.ndarray, task: str, num_classes: int) -> dict[str, np.ndarray]:
    """The inverse of ``pack_outputs`` for a model of ``task`` over ``num_classes`` classes."""
    heads, outputs, start = output_heads(task), {}, 0
    for name, width in ((EMOTION_OUTPUT, num_classes), (AFFECT_OUTPUT, 2)):
        if name in heads:
            outputs[name] = np.asarray(matrix)[:, start:start + width]
            start += width
    return outputs

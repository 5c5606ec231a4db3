"""User-supplied pre-trained video backbones: load, check, embed a clip's frames.

A backbone is a TensorFlow SavedModel folder (its ``serving_default`` signature) or a ``.keras`` file that
takes one float tensor of frames, either whole clips ``(batch, T, H, W, 3)`` or single images
``(batch, H, W, 3)``, and returns one vector per clip or image ``(batch, D)``. Per-image models run on
every sampled frame and their vectors are averaged over time.

Input convention: RGB frames resized to the model's ``H x W`` (aspect not kept), float32 in ``[0, 1]``; a
model whose input is ``uint8`` gets the raw 0-255 pixels. Any further normalisation (ImageNet mean and
standard deviation, say) belongs inside the exported model.

Nothing is downloaded: the user names a file. Its content hash (not its path) keys the feature cache, so
moving the file keeps the cache and a different file makes a new one.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectflow.errors import UserError

CHUNK_BYTES = 1 << 20
# Clip length used to probe a backbone whose input takes any number of frames.
PROBE_FRAMES = 16


class BackboneError(UserError, ValueError):
    """A backbone that cannot be used; the message names the path and the reason."""


@dataclass(frozen=True)
class Backbone:
    """A loaded backbone: its frame size, clip length (``None`` when per image or free), output size."""

    path: str
    content_hash: str
    format: str                       # "keras" or "saved_model"
    height: int
    width: int
    frames: int | None                # fixed clip length, None when the model takes any (or single images)
    per_frame: bool                   # True for (batch, H, W, 3) image models
    dim: int
    uint8_input: bool
    run: Callable[[np.ndarray], np.ndarray]  # (batch, ...) model input -> (batch, D)

    def model_input(self, frames: np.ndarray) -> np.ndarray:
        """``(T, h, w, 3)`` uint8 RGB -> the model's batch: resized, scaled, re-sampled to its clip length."""
        import cv2

        if self.frames is not None and len(frames) != self.frames:
            from affectflow.media import sample_indices

            frames = frames[sample_indices(len(frames), self.frames)]
        resized = np.stack([cv2.resize(f, (self.width, self.height), interpolation=cv2.INTER_AREA) for f in frames])
        scaled = resized if self.uint8_input else resized.astype(np.float32) / 255.0
        return scaled if self.per_frame else scaled[None]

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """One clip's ``(T, h, w, 3)`` uint8 frames -> ``(D,)`` float32 (image models: mean over frames)."""
        out = np.asarray(self.run(self.model_input(frames)), dtype=np.float32)
        return out.mean(axis=0) if self.per_frame else out[0]


def content_hash(path: str | Path) -> str:
    """SHA-256 of a ``.keras`` file, or of a SavedModel folder's files (relative names and bytes, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def _format(path: Path) -> str:
    if not path.exists():
        raise BackboneError(f"{path}: backbone not found")
    if path.is_file() and path.suffix == ".keras":
        return "keras"
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "saved_model"
    raise BackboneError(f"{path}: not a backbone: expected a .keras file or a TensorFlow SavedModel folder "
                        "(one holding saved_model.pb)")


def _keras_runner(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], tuple, str]:
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:
        raise BackboneError(f"{path}: cannot load the Keras model ({type(err).__name__}: {err})") from err
    if len(model.inputs) != 1:
        raise BackboneError(f"{path}: the backbone must take one frames input, it takes {len(model.inputs)}")
    spec = model.inputs[0]
    return (lambda x: np.asarray(model(x, training=False))), tuple(spec.shape), str(spec.dtype)


def _saved_model_runner(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], tuple, str]:
    import tensorflow as tf

    try:
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    except KeyError as err:
        raise BackboneError(f"{path}: the SavedModel has no serving_default signature") from err
    except Exception as err:
        raise BackboneError(f"{path}: cannot load the SavedModel ({type(err).__name__}: {err})") from err
    specs = signature.structured_input_signature[1]
    if len(specs) != 1:
        raise BackboneError(f"{path}: the backbone must take one frames input, its signature takes {sorted(specs)}")
    (name, spec), = specs.items()
    outputs = list(signature.structured_outputs)
    if len(outputs) != 1:
        raise BackboneError(f"{path}: the backbone must return one embedding, its signature returns {outputs}")

    def run(x: np.ndarray) -> np.ndarray:
        return signature(**{name: tf.constant(x, dtype=spec.dtype)})[outputs[0]].numpy()

    return run, tuple(spec.shape), spec.dtype.name


def _frame_layout(path: Path, shape: tuple) -> tuple[int, int, int | None, bool]:
    """``(H, W, T, per_frame)`` from the input shape, or a ``BackboneError`` saying what is expected."""
    if len(shape) not in (4, 5) or shape[-1] != 3:
        raise BackboneError(f"{path}: the backbone input has shape {shape}; expected (batch, T, H, W, 3) clips "
                            "or (batch, H, W, 3) frames")
    height, width = shape[-3], shape[-2]
    if height is None or width is None:
        raise BackboneError(f"{path}: the backbone input {shape} leaves the frame size open; export it with a "
                            "fixed height and width")
    return int(height), int(width), (None if len(shape) == 4 or shape[1] is None else int(shape[1])), len(shape) == 4


def _load(path: Path) -> Backbone:
    kind = _format(path)
    run, shape, dtype = (_keras_runner if kind == "keras" else _saved_model_runner)(path)
    height, width, frames, per_frame = _frame_layout(path, shape)
    uint8 = dtype == "uint8"
    probe_shape = (frames or PROBE_FRAMES, height, width, 3) if not per_frame else (2, height, width, 3)
    probe = np.zeros(probe_shape, np.uint8 if uint8 else np.float32)
    try:
        out = np.asarray(run(probe if per_frame else probe[None]))
    except Exception as err:
        raise BackboneError(f"{path}: the backbone failed on a {probe_shape} input "
                            f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from err
    expected_rows = probe_shape[0] if per_frame else 1
    if out.ndim != 2 or out.shape[0] != expected_rows:
        raise BackboneError(f"{path}: the backbone returns shape {out.shape[1:]} per input; expected one "
                            "embedding vector (batch, D)")
    return Backbone(str(path), content_hash(path), kind, height, width, frames, per_frame, int(out.shape[1]),
                    uint8, run)


_LOADED: dict[tuple[str, int, int], Backbone] = {}


def load_backbone(path: str | Path) -> Backbone:
    """The backbone at ``path``, loaded (and hashed) once per process while the file stays unchanged."""
    path = Path(path).expanduser().resolve()
    _format(path)
    stamp = path.stat()
    key = (str(path), stamp.st_mtime_ns, stamp.st_size)
    if key not in _LOADED:
        _LOADED[key] = _load(path)
    return _LOADED[key]


def require_backbone(path: str, expected_hash: str) -> Backbone:
    """The backbone a model or cache was made with, or a ``BackboneError`` saying which one is missing."""
    if not Path(path).expanduser().exists():
        raise BackboneError(f"the model was trained with backbone {expected_hash[:16]} at {path}; file not found")
    backbone = load_backbone(path)
    if expected_hash and backbone.content_hash != expected_hash:
        raise BackboneError(f"{path}: this backbone ({backbone.content_hash[:16]}) is not the one the model was "
                            f"trained with ({expected_hash[:16]}); the file changed")
    return backbone


def trainable_backbone(backbone: Backbone):
    """A fresh, trainable copy of a ``.keras`` backbone, named ``backbone``, to fine-tune inside the model.

    SavedModels are inference graphs: ``keras.layers.TFSMLayer`` can wrap one, but a model holding it saves
    only a reference to the external folder and loads back only with unsafe deserialisation, so fine-tuning
    asks for a ``.keras`` file.
    """
    import keras

    if backbone.format != "keras":
        raise BackboneError(f"{backbone.path}: fine-tuning needs a .keras backbone file; a SavedModel can only be used "
                            "frozen (export the model with model.save('backbone.keras'))")
    model = keras.models.load_model(backbone.path, compile=False)
    model.trainable = True
    model.name = "backbone"
    return model


BUNDLE_FOLDER = "backbone"


def bundle(path: str | Path, folder: str | Path) -> Path:
    """Copy a backbone (file or SavedModel folder) into ``folder/backbone/``, next to a packaged model, so
    the package serves without the original file; returns the copy's path."""
    source = Path(path)
    target = Path(folder) / BUNDLE_FOLDER / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target


def bundled(folder: str | Path) -> Path | None:
    """The backbone ``bundle`` copied into a packaged model's ``folder``, if any."""
    copies = sorted((Path(folder) / BUNDLE_FOLDER).glob("*"))
    return copies[0] if copies else None

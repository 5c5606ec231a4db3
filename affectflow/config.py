"""Typed configuration: where state lives and how clips are preprocessed and models trained.

Every path derives from one setting, ``AFFECTFLOW_HOME`` (default ``./.affectflow``), so two homes
never interfere and pointing the home elsewhere moves all state at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

HOME_ENV = "AFFECTFLOW_HOME"
DEFAULT_HOME = ".affectflow"


@dataclass(frozen=True)
class Paths:
    """All on-disk state of one affectflow home."""

    home: Path

    @property
    def inbox(self) -> Path:
        """Landing folder: one sub-folder per new batch (media + labels.csv)."""
        return self.home / "inbox"

    @property
    def quarantine(self) -> Path:
        """Batches that failed validation, with their reports; nothing here is ever deleted."""
        return self.home / "quarantine"

    @property
    def datasets(self) -> Path:
        """Curated store: ``datasets/<name>/<batch>/`` plus ``datasets/<name>/manifest.parquet``."""
        return self.home / "datasets"

    @property
    def features(self) -> Path:
        """Feature cache: ``features/<config-hash>/<clip-hash>.npz``."""
        return self.home / "features"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def numba_cache(self) -> Path:
        return self.home / "numba-cache"

    @property
    def mlflow_tracking_uri(self) -> str:
        """A user's ``MLFLOW_TRACKING_URI`` wins (e.g. an MLflow server); otherwise the home's sqlite store."""
        return user_setting("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_db}"

    def ensure(self) -> Paths:
        for folder in (self.inbox, self.quarantine, self.datasets, self.features, self.reports,
                       self.mlflow_artifacts, self.bentoml_home, self.prefect_home, self.numba_cache):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def get_paths(home: str | os.PathLike[str] | None = None) -> Paths:
    """The paths of ``home``, else of ``$AFFECTFLOW_HOME``, else of ``./.affectflow`` (absolute)."""
    chosen = home if home is not None else os.environ.get(HOME_ENV, DEFAULT_HOME)
    return Paths(Path(chosen).expanduser().resolve())


_SET_BY_US: dict[str, str] = {}


def user_setting(name: str) -> str | None:
    """``$name`` unless affectflow itself set it for a home (then it is ours to replace)."""
    value = os.environ.get(name)
    return None if value is None or value == _SET_BY_US.get(name) else value


def remember_setting(name: str, value: str) -> None:
    """Record that ``$name`` now holds a value derived from a home (e.g. one a library exported for us)."""
    _SET_BY_US[name] = value


def activate_home(home: str | os.PathLike[str] | None = None) -> Paths:
    """Point the environment of this process (and its children) at one home.

    Sets the variables that Prefect (embedded mode), BentoML and numba read, unless the user has
    pointed them somewhere else (a Prefect server, say); values this function set for an earlier home are
    replaced, so one process can switch homes (tests do). Call before those libraries read them.
    """
    paths = get_paths(home).ensure()
    os.environ[HOME_ENV] = str(paths.home)
    derived = {"PREFECT_HOME": paths.prefect_home, "BENTOML_HOME": paths.bentoml_home,
               "NUMBA_CACHE_DIR": paths.numba_cache}
    for name, value in derived.items():
        if user_setting(name) is None:
            os.environ[name] = _SET_BY_US[name] = str(value)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")  # no usage reporting from a closed network
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return paths


def _stable_hash(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PreprocessConfig:
    """How a clip becomes model inputs. Its hash keys the feature cache and travels with the model."""

    num_frames: int = 16          # uniformly sampled over the clip (the original notebooks' 16)
    frame_size: int = 64          # square side (aspect not kept); 224 for external backbones
    sample_rate: int = 16000      # audio is decoded to mono at this rate
    audio_seconds: float = 3.0    # fixed length policy: pad with zeros / truncate to this duration
    n_mfcc: int = 40
    n_mels: int = 64
    win_ms: float = 25.0
    hop_ms: float = 10.0
    face_backend: str = "landmarks"  # "landmarks" (built-in dlib), "openface" (external binary) or "none"
    face_crop_size: int = 64      # side of the aligned grayscale face crop per sampled frame
    face_width: int = 320         # frames are decoded once and downscaled to this width for face work
    max_clip_seconds: float = 60.0  # longer clips are rejected (labels describe one utterance)
    backbone: str = ""            # pre-trained video backbone (.keras or SavedModel), "" for none: with_backbone
    backbone_hash: str = ""       # its content hash: this, not the path, keys the cache
    version: int = 2              # bump when extraction code changes its output

    @property
    def audio_samples(self) -> int:
        return int(round(self.audio_seconds * self.sample_rate))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def audio_steps(self) -> int:
        """Number of MFCC frames for the fixed-length audio (librosa's centred framing)."""
        return 1 + self.audio_samples // self.hop_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def hash(self) -> str:
        """Hash of every field but the backbone's path (a moved backbone file keeps its cache); the backbone
        fields are left out entirely when there is none, so configs without one keep their old hashes."""
        payload = {k: v for k, v in self.to_dict().items() if k != "backbone"}
        if not self.backbone_hash:
            del payload["backbone_hash"]
        return _stable_hash(payload)


def with_backbone(cfg: PreprocessConfig, path: str | os.PathLike[str] | None,
                  full_frames: bool = False) -> PreprocessConfig:
    """``cfg`` embedding clips with the backbone at ``path`` (absolute path and content hash filled in);
    ``cfg`` without a backbone for ``None`` or "". ``full_frames``: the records' frames at the backbone's
    input size too (what fine-tuning trains on). Raises ``backbone.BackboneError`` for an unusable file."""
    if not path:
        return dataclasses.replace(cfg, backbone="", backbone_hash="")
    from affectflow.backbone import load_backbone

    backbone = load_backbone(path)
    size = max(backbone.height, backbone.width) if full_frames else cfg.frame_size
    return dataclasses.replace(cfg, backbone=backbone.path, backbone_hash=backbone.content_hash, frame_size=size)


Task = Literal["classification", "regression", "multitask"]
AudioEncoder = Literal["stats", "conv", "hybrid"]


@dataclass(frozen=True)
class TrainConfig:
    """Model and optimisation settings; logged as MLflow params."""

    task: Task = "multitask"
    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    ce_weight: float = 2.0        # the original notebooks' weighting: CE x 2 + (1 - CCC) x 1
    ccc_weight: float = 1.0
    dropout: float = 0.3
    hidden_units: int = 128
    patience: int = 8             # early stopping on validation loss, best weights restored
    min_epochs: int = 10          # epochs before early stopping may pick a best epoch (one noisy val speaker)
    val_fraction: float = 0.2     # of speakers, carved from the training side
    test_fraction: float = 0.3    # of speakers, never seen in training or model selection
    seed: int = 13
    audio_encoder: AudioEncoder = "hybrid"  # utterance statistics, temporal convolutions, or both
    spec_augment: int = 2         # time and feature masks per clip in training (0: off)
    shared_layers: int = 2        # dense layers after fusion (0-2)
    modality_dropout: float = 0.4   # chance per modality and clip of hiding it in training (never all)
    class_weighting: bool = True  # cross-entropy weighted by inverse class frequency of the training set
    speaker_norm: bool = True     # align each speaker's audio feature statistics (unlabelled audio only)
    refit: bool = False           # after early stopping, refit on train + val for the best epoch count
    finetune_backbone: bool = False  # train the preprocessing's backbone inside the model (a .keras file)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

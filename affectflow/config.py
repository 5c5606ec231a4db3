"""Typed configuration: where state lives and how clips are preprocessed and models trained.

Every path derives from one setting, ``AFFECTFLOW_HOME`` (default ``./.affectflow``), so two homes
never interfere and pointing the home elsewhere moves all state at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from affectflow.errors import ConfigError

FaceBackendName = Literal["landmarks", "openface", "none"]
# Audio features of a record: MFCC with deltas and log-mel (frames), openSMILE's functionals of the clip (eGeMAPS
# v02: 88; ComParE 2016: 6373), frames and one set of functionals, or frames and both (ComParE for a linear head:
# ``TrainConfig.linear_head``).
AudioFeatureSet = Literal["mfcc", "egemaps", "mfcc+egemaps", "compare", "mfcc+compare", "mfcc+egemaps+compare"]
# The clip-level functional sets, in the order records and models hold them.
FUNCTIONAL_SETS: tuple[str, ...] = ("egemaps", "compare")
# Chosen by cross-validation (docs/model.md): MFCC + eGeMAPS beat MFCC alone by 0.04 UAR on EmoDB and RAVDESS, and
# ComParE beside them in a linear head (``TrainConfig.linear_head`` "auto") by 0.04-0.06 more.
DEFAULT_AUDIO_FEATURES: AudioFeatureSet = "mfcc+egemaps+compare"
# What records and model cards written before eGeMAPS existed hold (they name no feature set).
LEGACY_AUDIO_FEATURES: AudioFeatureSet = "mfcc"
AUDIO_FEATURE_SETS: tuple[AudioFeatureSet, ...] = typing.get_args(AudioFeatureSet)
# How ingest treats a batch with failing rows (affectflow.ingest): split them off, or quarantine it whole.
IngestPolicy = Literal["partial", "whole"]
POLICIES: tuple[IngestPolicy, ...] = typing.get_args(IngestPolicy)
DEFAULT_POLICY: IngestPolicy = "partial"
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
    def gx(self) -> Path:
        """The Great Expectations project (file-backed Data Context): suites, validation definitions,
        checkpoints, validation history and Data Docs."""
        return self.home / "gx"

    @property
    def drift(self) -> Path:
        """Drift reference profiles per dataset: ``drift/<dataset>/``."""
        return self.home / "drift"

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
    # Without servers, each command starts Prefect's embedded API; 20 s (Prefect's default) is too short on a
    # loaded machine (its first start also migrates the database). Prefect reads it at import: child processes see
    # it, and ``cli.embedded_api`` passes it on explicitly for this one.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")  # no usage reporting from a closed network
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars are noise in a worker's log
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
    face_backend: FaceBackendName = "landmarks"  # built-in dlib, the OpenFace binary, or no face features
    face_crop_size: int = 64      # side of the aligned grayscale face crop per sampled frame
    face_width: int = 320         # frames are decoded once and downscaled to this width for face work
    max_clip_seconds: float = 60.0  # longer clips are rejected (labels describe one utterance)
    backbone: str = ""            # pre-trained video backbone (.keras or SavedModel), "" for none: with_backbone
    backbone_hash: str = ""       # its content hash: this, not the path, keys the cache
    audio_features: AudioFeatureSet = DEFAULT_AUDIO_FEATURES  # MFCC/deltas/log-mel frames, functionals, or both
    version: int = 2              # bump when extraction code changes its output

    def __post_init__(self) -> None:
        if self.audio_features not in AUDIO_FEATURE_SETS:
            raise ConfigError(f"unknown audio feature set {self.audio_features!r}: choose one of "
                              f"{', '.join(AUDIO_FEATURE_SETS)}")

    @property
    def mfcc(self) -> bool:
        """Records hold MFCC, deltas and log-mel frames."""
        return "mfcc" in self.audio_features.split("+")

    @property
    def functionals(self) -> tuple[str, ...]:
        """The functional sets records hold (``FUNCTIONAL_SETS`` named in ``audio_features``)."""
        return tuple(name for name in FUNCTIONAL_SETS if name in self.audio_features.split("+"))

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
        """A config as ``to_dict`` wrote it; one written before eGeMAPS existed had MFCC only."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"audio_features": LEGACY_AUDIO_FEATURES, **{k: v for k, v in data.items() if k in known}})

    def hash(self) -> str:
        """Hash of every field but the backbone's path (a moved backbone file keeps its cache); the backbone
        fields are left out entirely when there is none, and the audio feature set when it is MFCC only, so
        configs from before either existed keep their old hashes."""
        payload = {k: v for k, v in self.to_dict().items() if k != "backbone"}
        if not self.backbone_hash:
            del payload["backbone_hash"]
        if self.audio_features == LEGACY_AUDIO_FEATURES:
            del payload["audio_features"]
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


def preprocessing(face_backend: str = "landmarks", backbone: str | os.PathLike[str] | None = None,
                  finetune_backbone: bool = False,
                  audio_features: str = DEFAULT_AUDIO_FEATURES) -> PreprocessConfig:
    """The preprocessing of a run, from the choices a user makes (``preprocess``, ``train``, ``evaluate``
    and the flows all come here): the face backend, an optional pre-trained video backbone, whose
    full-size frames are kept when it is fine-tuned, and the audio feature set."""
    if face_backend not in typing.get_args(FaceBackendName):
        raise ConfigError(f"unknown face backend {face_backend!r}: choose one of "
                          f"{', '.join(typing.get_args(FaceBackendName))}")
    cfg = PreprocessConfig(face_backend=face_backend, audio_features=audio_features)
    return with_backbone(cfg, backbone, full_frames=finetune_backbone)


Task = Literal["classification", "regression", "multitask"]
AudioEncoder = Literal["stats", "conv", "hybrid"]
# Functionals classified by a logistic regression beside the network (``affectflow.linear_head``), or none;
# "auto": ComParE where the records hold it and the task classifies (``linear_head.resolved``).
LinearHead = Literal["auto", "none", "egemaps", "compare"]


def option(default, doc: str):
    """A config field with the help text the command line shows for it."""
    return dataclasses.field(default=default, metadata={"help": doc})


@dataclass(frozen=True)
class TrainConfig:
    """Model and optimisation settings: CLI options of ``affectflow train``, the ``training`` parameter of
    the train and cross-validation flows, keys of a ``--config`` file; logged as MLflow params."""

    task: Task = option("multitask", "heads to train: classes, [arousal, valence], or both")
    epochs: int = option(40, "maximum epochs; early stopping picks the best")
    batch_size: int = option(16, "clips per batch")
    learning_rate: float = option(2e-3, "AdamW learning rate (halved on validation plateaus)")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    ce_weight: float = option(2.0, "weight of the cross-entropy loss (the original: 2 x CE + 1 x (1 - CCC))")
    ccc_weight: float = option(1.0, "weight of the (1 - CCC) loss of the [arousal, valence] head")
    dropout: float = option(0.3, "dropout after each shared dense layer")
    hidden_units: int = option(128, "units of the shared dense layers")
    patience: int = option(8, "epochs without validation improvement before stopping (best weights restored)")
    min_epochs: int = option(10, "epochs before early stopping may pick a best epoch")
    val_fraction: float = option(0.2, "share of speakers carved from the training side for validation")
    test_fraction: float = option(0.3, "share of speakers held out for the test metrics")
    seed: int = option(13, "seed of the split, the initialisation and the shuffling")
    audio_encoder: AudioEncoder = option("hybrid", "utterance statistics, temporal convolutions, or both")
    spec_augment: int = option(2, "time and feature masks per clip in training (0: off)")
    augment: int = option(0, "augmented copies of each training clip's audio: gain, noise, room reverberation, "
                             "pitch and tempo, seeded (0: off)")
    linear_head: LinearHead = option("auto", "openSMILE functionals classified by an L2 logistic regression beside "
                                              "the network (not fed to it), probabilities averaged; its C chosen on "
                                              "the validation speakers (needs records with that set); auto: "
                                              "compare where the records hold it and the task classifies")
    shared_layers: int = option(2, "dense layers after fusion (0-2)")
    modality_dropout: float = option(0.4, "chance per modality and clip of hiding it in training (never all)")
    class_weighting: bool = option(True, "weight cross-entropy by inverse class frequency of the training set")
    speaker_norm: bool = option(True, "align each speaker's audio feature statistics (their unlabelled audio)")
    refit: bool = option(False, "after early stopping, refit on train + validation for the best epoch count")
    finetune_backbone: bool = option(False, "train the --backbone inside the model (a .keras file; slow on CPU)")
    promote_min_uar: float = option(2.0, "promotion floor: test UAR at least this many times chance (0: none)")
    promote_min_ccc: float = option(0.3, "promotion floor: mean test CCC of [arousal, valence] (affect heads)")

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "learning_rate": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0, "ce_weight": self.ce_weight >= 0,
            "ccc_weight": self.ccc_weight >= 0, "dropout": 0 <= self.dropout < 1,
            "hidden_units": self.hidden_units >= 1, "patience": self.patience >= 1, "min_epochs": self.min_epochs >= 0,
            "val_fraction": 0 < self.val_fraction < 1, "test_fraction": 0 < self.test_fraction < 1,
            "spec_augment": self.spec_augment >= 0, "augment": 0 <= self.augment <= 10, "shared_layers": 0 <= self.shared_layers <= 2,
            "modality_dropout": 0 <= self.modality_dropout < 1, "promote_min_uar": self.promote_min_uar >= 0,
            "promote_min_ccc": -1 <= self.promote_min_ccc <= 1,
            "task": self.task in typing.get_args(Task), "audio_encoder": self.audio_encoder in typing.get_args(AudioEncoder),
            "linear_head": self.linear_head in typing.get_args(LinearHead),
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ConfigError("; ".join(f"{name}={getattr(self, name)!r} is out of range ({_field_help(self, name)})"
                                        for name in wrong))
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("val_fraction + test_fraction must leave speakers to train on (sum < 1)")
        if self.linear_head not in ("auto", "none") and self.task == "regression":
            raise ConfigError("linear_head classifies emotions: a regression-only task has no emotion head")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> TrainConfig:
        """The defaults with ``values`` applied (a config file, flow parameters, command-line options);
        unknown names and values of the wrong type are a ``ConfigError`` naming them."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"unknown training settings {unknown}; known: {', '.join(fields)}")
        kinds = {bool: "true or false", int: "a whole number", float: "a number", str: "a name"}
        typed = {}
        for name, value in values.items():
            expected = type(fields[name].default)
            fits = isinstance(value, expected) or (expected is float and isinstance(value, int))
            if not fits or (expected is not bool and isinstance(value, bool)):
                raise ConfigError(f"{name} must be {kinds[expected]}, got {value!r}")
            typed[name] = expected(value)
        return cls(**typed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def settings_file(path: str | os.PathLike[str]) -> dict[str, object]:
    """Training settings from a TOML or JSON file whose keys are ``TrainConfig`` field names (a TOML
    ``[training]`` table is also accepted); checked when passed to ``TrainConfig.from_mapping``."""
    path = Path(path)
    kind = "JSON" if path.suffix == ".json" else "TOML"
    try:
        text = path.read_text()
        values = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except ValueError as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ConfigError(f"config file {path} is not valid {kind}: {err}") from err
    values = values.get("training", values) if isinstance(values, dict) else values
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: expected a table of training settings")
    return values


def _field_help(config: object, name: str) -> str:
    return next(f.metadata.get("help", "") for f in dataclasses.fields(config) if f.name == name)

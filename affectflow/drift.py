"""Drift per accepted batch: a batch can pass every schema rule and still come from a new microphone, camera or
population. This compares it with the data the dataset's champion learnt from.

**Profiles.** One row per clip (``PROFILE_FEATURES``): duration; loudness (RMS in dBFS) and pitch (median and IQR
of ``librosa.yin`` f0 over voiced frames, i.e. within ``VOICED_DB`` of the loudest frame: yin costs milliseconds
where pyin costs a second per clip, and the energy gate stands in for pyin's voicing); MFCC 1-4 means over the
audio's frames (c0 is loudness again); share of sampled frames with a face, brightness and sharpness (variance of
the Laplacian) of the face crops; frame size and rate; per side, speaker balance (each clip's speaker's clip count
over the side's mean per speaker: 1 everywhere for a balanced side, whoever the speakers are) and, categorically,
emotion. The
face and MFCC figures come from the feature cache records (``cache.preprocess_clips``: a clip is decoded for
features once, by training or by this); the rest from the file's headers (``media.read_header``) and its audio.
Profiles are kept per dataset and preprocessing config in ``<home>/drift/<dataset>/``, keyed by clip content hash,
so a reference is profiled once.

**Reference.** The champion's training data: the manifest (append-only) prefix ending at the batch boundary whose
dataset version is the one on the champion's model card. Without a champion, or when no boundary has its
version, every clip accepted before the batch (the report says which and why). Clips of the batch itself are
never in the reference.

**Tests.** scipy's two-sample tests, the ones Evidently's data-drift preset picks for samples under 1000: the
Kolmogorov-Smirnov test per numeric feature, chi-square on the 2 x K contingency table per categorical one.
(Evidently itself would add a large dependency tree for two scipy calls.) A feature drifts at ``p < p_threshold``
(0.05) divided by the number of features tested (Bonferroni, ``compare``); one present on one side only drifts (a modality that appears or disappears); one absent on both sides
(faces of an audio-only corpus) is skipped and named. The features fall in groups that one cause moves together
(``FEATURE_GROUPS``: voice, spectrum, face, format, labels), and the batch drifts when the share of drifted
features in any group reaches ``share_threshold`` (0.5, Evidently's dataset drift share, applied per group): a
new microphone moves the voice features, not the face's, and a share over all features would dilute it below any
threshold that ordinary batches stay under. New speakers are not drift (emotion corpora grow by people);
a batch whose clips come from few speakers, unevenly, is.

**Predictions.** With a champion that has an emotion head, its predicted class shares on the batch against those
on its own test split (the speakers ``splits.speaker_split`` held out, recomputed from the run's
``test_fraction``, ``val_fraction`` and ``seed``), chi-square again; reported beside the features, not counted in
their share. The model is loaded once per report.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from affectflow.cache import preprocess_clips
from affectflow.config import Paths, PreprocessConfig, preprocessing, user_setting
from affectflow.errors import UserError
from affectflow.features import ClipFeatures, compiled_librosa, load_features
from affectflow.ingest import _version, load_dataset
from affectflow.media import decode_audio, read_audio, read_header
from affectflow.storage import write_atomic
from affectflow.tables import markdown_table

P_THRESHOLD = 0.05
SHARE_THRESHOLD = 0.5
VOICED_DB = 15.0              # frames within this of the clip's loudest frame count as voiced for pitch
PITCH_RANGE_HZ = (60.0, 500.0)
PROFILE_VERSION = 1           # bump when a profile feature's definition changes: old profile files are ignored
MFCC_COEFFICIENTS = (1, 2, 3, 4)
PROFILE_FEATURES: tuple[str, ...] = (
    "duration_s", "loudness_dbfs", "pitch_median_hz", "pitch_iqr_hz", *(f"mfcc_{i}" for i in MFCC_COEFFICIENTS),
    "face_share", "face_brightness", "face_sharpness", "width", "height", "fps")
SIDE_FEATURES: tuple[str, ...] = ("speaker_balance",)  # computed over each side, not per clip
CATEGORICAL_FEATURES: tuple[str, ...] = ("emotion",)
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "voice": ("loudness_dbfs", "pitch_median_hz", "pitch_iqr_hz"),
    "spectrum": tuple(f"mfcc_{i}" for i in MFCC_COEFFICIENTS),
    "face": ("face_share", "face_brightness", "face_sharpness"),
    "format": ("duration_s", "width", "height", "fps"),
    "labels": ("emotion", "speaker_balance"),
}
REPORT_JSON, REPORT_MD = "drift.json", "drift.md"


class UnknownBatchError(UserError, LookupError):
    """The batch asked for is not an accepted batch of the dataset; the message lists those that are."""


# --- profiles -------------------------------------------------------------------------------------------------

def _pitch(audio: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """Median and interquartile range of f0 (Hz) over voiced frames; NaN without any."""
    librosa = compiled_librosa()
    if audio.size < 1024:
        return math.nan, math.nan
    f0 = librosa.yin(audio, fmin=PITCH_RANGE_HZ[0], fmax=PITCH_RANGE_HZ[1], sr=sample_rate, frame_length=1024,
                     hop_length=256, center=True)
    rms = librosa.feature.rms(y=audio, frame_length=1024, hop_length=256, center=True)[0]
    voiced = f0[rms >= rms.max() * 10 ** (-VOICED_DB / 20)] if rms.max() > 0 else f0[:0]
    if voiced.size == 0:
        return math.nan, math.nan
    low, median, high = np.percentile(voiced, [25, 50, 75])
    return float(median), float(high - low)


def _face_figures(record: ClipFeatures, cfg: PreprocessConfig) -> dict[str, float]:
    """Face share of the sampled frames, and brightness and sharpness of the crops where a face was found."""
    import cv2

    if cfg.face_backend == "none" or not record.video_mask:
        return dict.fromkeys(("face_share", "face_brightness", "face_sharpness"), math.nan)
    crops = record.face_crops[record.face_present > 0]
    return {"face_share": float(record.face_present.mean()),
            "face_brightness": float(crops.mean()) if len(crops) else math.nan,
            "face_sharpness": float(np.mean([cv2.Laplacian(c, cv2.CV_64F).var() for c in crops]))
            if len(crops) else math.nan}


def _mfcc_means(record: ClipFeatures, cfg: PreprocessConfig) -> dict[str, float]:
    """MFCC means over the frames of real audio (the record's padding left out)."""
    steps = min(len(record.mfcc), int(record.audio_seconds * cfg.sample_rate / cfg.hop_length) + 1)
    usable = record.audio_mask > 0 and steps > 0
    return {f"mfcc_{i}": float(record.mfcc[:steps, i].mean()) if usable and i < record.mfcc.shape[1] else math.nan
            for i in MFCC_COEFFICIENTS}


def clip_profile(clip: str | Path, record: ClipFeatures, cfg: PreprocessConfig) -> dict[str, float]:
    """``PROFILE_FEATURES`` of one clip from its feature record, its headers and its audio (NaN: not there)."""
    header = read_header(clip)
    if not header.has_audio:
        audio = np.zeros(0, np.float32)
    elif header.duration_s is not None:  # bounded (its record exists: it passed the length check): in-process
        audio = decode_audio(clip, cfg.sample_rate)
    else:
        audio = read_audio(clip, cfg.sample_rate, max_seconds=cfg.max_clip_seconds)
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else math.nan
    median, spread = _pitch(audio, cfg.sample_rate) if record.audio_mask else (math.nan, math.nan)
    video = header.has_video and bool(record.video_mask)
    return {"duration_s": header.duration_s or audio.size / cfg.sample_rate,
            "loudness_dbfs": 20 * math.log10(max(rms, 1e-6)) if audio.size else math.nan,
            "pitch_median_hz": median, "pitch_iqr_hz": spread, **_mfcc_means(record, cfg),
            **_face_figures(record, cfg),
            **({"width": float(header.width), "height": float(header.height), "fps": header.fps} if video
               else dict.fromkeys(("width", "height", "fps"), math.nan))}


def _profile_file(paths: Paths, dataset: str, cfg: PreprocessConfig) -> Path:
    return paths.drift / dataset / f"profiles-v{PROFILE_VERSION}-{cfg.hash()}.parquet"


def profiles(rows: pd.DataFrame, paths: Paths, dataset: str, cfg: PreprocessConfig) -> pd.DataFrame:
    """Profiles of ``rows`` (manifest rows with absolute ``path``), indexed by ``clip_hash``: cached ones read,
    the others computed (features from the cache, filled where missing) and added to the cache. A clip whose
    features cannot be computed has no profile (and is counted by the caller)."""
    store = _profile_file(paths, dataset, cfg)
    cached = pd.read_parquet(store) if store.is_file() else pd.DataFrame(columns=list(PROFILE_FEATURES),
                                                                          index=pd.Index([], name="clip_hash"))
    todo = rows[~rows["clip_hash"].isin(cached.index)].drop_duplicates("clip_hash")
    if len(todo):
        results = preprocess_clips(list(todo["path"]), paths.features, cfg)
        new = {row.clip_hash: clip_profile(row.path, load_features(result.record), cfg)
               for row, result in zip(todo.itertuples(), results) if result.ok}
        if new:
            added = pd.DataFrame.from_dict(new, orient="index", columns=list(PROFILE_FEATURES)).astype("float64")
            added.index.name = "clip_hash"
            cached = pd.concat([cached.astype("float64"), added]) if len(cached) else added
            write_atomic(store, cached.to_parquet())
    return cached.loc[cached.index.intersection(rows["clip_hash"])]


# --- statistics -----------------------------------------------------------------------------------------------

def _round(value: float | None, digits: int = 6) -> float | None:
    """``digits`` significant digits (a p-value of 1e-19 stays one); None for missing or not finite."""
    return None if value is None or not math.isfinite(value) else float(f"{value:.{digits}g}")


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's two-sample test. ``reference``/``batch``: means (numeric) or shares per category."""

    name: str
    kind: str                    # "numeric" or "categorical"
    test: str                    # "ks", "chi-square", or "presence" (present on one side only)
    statistic: float | None
    p_value: float | None
    drifted: bool
    reference: float | dict[str, float] | None
    batch: float | dict[str, float] | None

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("statistic", "p_value"):
            data[key] = _round(data[key])
        if self.kind == "numeric":
            data["reference_mean"], data["batch_mean"] = _round(data.pop("reference")), _round(data.pop("batch"))
        else:
            data["reference_shares"], data["batch_shares"] = data.pop("reference"), data.pop("batch")
        return data


def numeric_drift(name: str, reference: Sequence[float], batch: Sequence[float],
                  p_threshold: float = P_THRESHOLD) -> FeatureDrift | None:
    """Two-sample Kolmogorov-Smirnov on the finite values; None when neither side has any."""
    ref = np.asarray(reference, dtype=np.float64)
    new = np.asarray(batch, dtype=np.float64)
    ref, new = ref[np.isfinite(ref)], new[np.isfinite(new)]
    if not ref.size and not new.size:
        return None
    means = (float(ref.mean()) if ref.size else None, float(new.mean()) if new.size else None)
    if not (ref.size and new.size):
        return FeatureDrift(name, "numeric", "presence", None, None, True, *means)
    result = stats.ks_2samp(ref, new)
    p_value = float(result.pvalue)
    return FeatureDrift(name, "numeric", "ks", float(result.statistic), p_value, p_value < p_threshold, *means)


def _shares(values: pd.Series) -> dict[str, float]:
    return {str(k): round(float(v), 6) for k, v in values.value_counts(normalize=True).sort_index().items()}


def categorical_drift(name: str, reference: Sequence[str], batch: Sequence[str],
                      p_threshold: float = P_THRESHOLD) -> FeatureDrift | None:
    """Chi-square on the 2 x K table of category counts; None when neither side has a value. One category on
    both sides: no difference to test (p = 1)."""
    ref, new = pd.Series(reference, dtype="object").dropna(), pd.Series(batch, dtype="object").dropna()
    if ref.empty and new.empty:
        return None
    shares = (_shares(ref) if len(ref) else None, _shares(new) if len(new) else None)
    if ref.empty or new.empty:
        return FeatureDrift(name, "categorical", "presence", None, None, True, *shares)
    table = pd.crosstab(pd.concat([ref, new], ignore_index=True).astype(str),
                        np.repeat([0, 1], [len(ref), len(new)])).to_numpy().T
    if table.shape[1] < 2:
        return FeatureDrift(name, "categorical", "chi-square", 0.0, 1.0, False, *shares)
    result = stats.chi2_contingency(table)
    p_value = float(result.pvalue)
    return FeatureDrift(name, "categorical", "chi-square", float(result.statistic), p_value, p_value < p_threshold,
                        *shares)


def speaker_balance(speakers: pd.Series) -> pd.Series:
    """Per clip: its speaker's clip count over the mean count per speaker of the side (1.0 throughout when every
    speaker has as many clips; above 1 for the clips of a dominant speaker)."""
    counts = speakers.map(speakers.value_counts())
    return counts / (len(speakers) / max(speakers.nunique(), 1))


def compare(reference: pd.DataFrame, batch: pd.DataFrame,
            p_threshold: float = P_THRESHOLD) -> tuple[list[FeatureDrift], list[str]]:
    """Every feature tested (``PROFILE_FEATURES``, ``SIDE_FEATURES``, ``CATEGORICAL_FEATURES``), and the names of
    those absent on both sides (skipped). Each side needs a ``speaker`` column.

    A feature drifts at ``p < p_threshold / features tested`` (Bonferroni): a batch drawn like the reference then
    shows any drifted feature with probability at most ``p_threshold``. Clips of one speaker are alike, so the
    tests, which take clips as independent, give p-values too small: uncorrected, 1 of 8 ordinary synthetic
    batches drifted on its faces (``benchmarks/drift_rule.py``)."""
    reference, batch = (side.assign(speaker_balance=speaker_balance(side["speaker"])) for side in (reference, batch))
    results, skipped = [], []
    for name in (*PROFILE_FEATURES, *SIDE_FEATURES, *CATEGORICAL_FEATURES):
        test = categorical_drift if name in CATEGORICAL_FEATURES else numeric_drift
        result = test(name, reference[name], batch[name], p_threshold)
        if result is None:
            skipped.append(name)
        else:
            results.append(result)
    per_feature = p_threshold / max(len(results), 1)
    return [replace(r, drifted=r.test == "presence" or (r.p_value is not None and r.p_value < per_feature))
            for r in results], skipped


# --- reference --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    """What the batch is compared with: ``kind`` "champion" (its training data) or "earlier" (every clip
    accepted before the batch), and why."""

    kind: str
    dataset_version: str | None
    rows: pd.DataFrame
    note: str


def _batches(manifest: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(manifest["batch"]))


def training_rows(manifest: pd.DataFrame, version: str) -> pd.DataFrame | None:
    """The manifest prefix, ending at a batch boundary, whose dataset version is ``version`` (None if none is)."""
    ends = manifest["batch"].ne(manifest["batch"].shift(-1)).to_numpy().nonzero()[0] + 1
    return next((manifest.iloc[:end] for end in ends if _version(manifest.iloc[:end]) == version), None)


def choose_reference(manifest: pd.DataFrame, batch: str, champion_version: str | None,
                     champion: str | None = None) -> Reference:
    """The reference for ``batch`` (see the module docstring); ``manifest`` in its stored (append) order."""
    start = int(np.flatnonzero(manifest["batch"].to_numpy() == batch)[0])
    before = manifest.iloc[:start]
    if champion_version is None:
        return Reference("earlier", _version(before) if len(before) else None, before,
                         "no champion: every clip accepted before the batch")
    trained = training_rows(manifest, champion_version)
    if trained is None:
        return Reference("earlier", _version(before) if len(before) else None, before,
                         f"the champion {champion}'s dataset version {champion_version} is no batch boundary of "
                         "the manifest: every clip accepted before the batch")
    if len(trained) <= start:
        return Reference("champion", champion_version, trained, f"the training data of the champion {champion}")
    return Reference("champion", _version(before) if len(before) else None, before,
                     f"the champion {champion} was trained on this batch too: its training data before the batch")


# --- the champion's predictions -----------------------------------------------------------------------------------

def _champion(dataset: str, paths: Paths):
    """The champion's ``Predictor`` and its run's params, or None (no MLflow store in the home: none)."""
    if user_setting("MLFLOW_TRACKING_URI") is None and not paths.mlflow_db.exists():
        return None
    from mlflow import MlflowClient

    from affectflow.names import model_name
    from affectflow.registry import champion, champion_uri, configure, load_predictor

    configure(paths)
    current = champion(model_name(dataset))
    if current is None:
        return None
    return load_predictor(champion_uri(dataset)), MlflowClient().get_run(current.run_id).data.params


def _predicted(predictor, rows: pd.DataFrame, paths: Paths) -> list[str]:
    """The champion's class for each of ``rows`` of its classes, as its evaluation feeds it (speakers aligned
    when it was trained so)."""
    from affectflow.arrays import load_arrays
    from affectflow.evaluation import predict_arrays
    from affectflow.labels import labelled_frame
    from affectflow.model import EMOTION_OUTPUT
    from affectflow.speakers import aligned_for

    classes = predictor.card.classes
    frame = labelled_frame(rows, classes)
    frame["record"] = [r.record for r in preprocess_clips(list(frame["path"]), paths.features, predictor.extraction)]
    frame = frame[frame["record"].notna()]
    if frame.empty:
        return []
    arrays = load_arrays(frame, classes)
    arrays = aligned_for(predictor.model, arrays) if predictor.card.speaker_norm else arrays
    return [classes[i] for i in predict_arrays(predictor.model, arrays)[EMOTION_OUTPUT].argmax(axis=1)]


def prediction_drift(predictor, params: dict, manifest: pd.DataFrame, batch_rows: pd.DataFrame, paths: Paths,
                     p_threshold: float = P_THRESHOLD) -> dict:
    """The champion's predicted class shares on its test split and on the batch, and their chi-square."""
    from affectflow.model import EMOTION_OUTPUT, output_heads
    from affectflow.splits import speaker_split

    if EMOTION_OUTPUT not in output_heads(predictor.card.task):
        return {"skipped": "the champion has no emotion head"}
    trained = training_rows(manifest, predictor.card.dataset_version)
    if trained is None:
        return {"skipped": f"the champion's dataset version {predictor.card.dataset_version} is no batch boundary"}
    known = trained[trained["emotion"].isin(predictor.card.classes)]
    split = speaker_split(known["speaker"], float(params["test_fraction"]), float(params["val_fraction"]),
                          int(params["seed"]))
    test = known[split == "test"]
    result = categorical_drift("predicted_emotion", _predicted(predictor, test, paths),
                               _predicted(predictor, batch_rows, paths), p_threshold)
    if result is None:
        return {"skipped": "no clip of the champion's classes on either side"}
    return {"model": predictor.card.model_version, "test_clips": len(test),
            "test_speakers": int(test["speaker"].nunique()), **result.to_dict()}


# --- the report ---------------------------------------------------------------------------------------------------

@dataclass
class DriftReport:
    """One batch against its reference; ``to_dict`` is ``drift.json``, ``markdown`` is ``drift.md``."""

    dataset: str
    batch: str
    reference: dict                  # kind, dataset_version, clips, note
    batch_clips: int
    p_threshold: float
    threshold: float
    features: list[FeatureDrift] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unprofiled: int = 0              # clips (both sides) whose features could not be computed
    predictions: dict = field(default_factory=lambda: {"skipped": "not measured"})
    seconds: float = 0.0

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def share_drifted(self) -> float:
        """Over all tested features (for the record; the verdict is per group)."""
        return len(self.drifted_features) / len(self.features) if self.features else 0.0

    @property
    def group_shares(self) -> dict[str, float]:
        """Share of drifted features per ``FEATURE_GROUPS`` group, over its tested features."""
        tested = {f.name: f.drifted for f in self.features}
        shares = {}
        for group, names in FEATURE_GROUPS.items():
            found = [tested[name] for name in names if name in tested]
            if found:
                shares[group] = sum(found) / len(found)
        return shares

    @property
    def drifted_groups(self) -> list[str]:
        return [group for group, share in self.group_shares.items() if share >= self.threshold]

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_groups)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "batch": self.batch, "reference": self.reference,
                "batch_clips": self.batch_clips, "p_threshold": self.p_threshold, "threshold": self.threshold,
                "share_drifted": round(self.share_drifted, 6),
                "group_shares": {k: round(v, 6) for k, v in self.group_shares.items()},
                "drifted_groups": self.drifted_groups, "drifted": self.drifted,
                "drifted_features": self.drifted_features, "features": [f.to_dict() for f in self.features],
                "skipped": self.skipped, "unprofiled": self.unprofiled, "predictions": self.predictions,
                "seconds": round(self.seconds, 3)}

    def markdown(self) -> str:
        ref = self.reference
        verdict = "**drifted**" if self.drifted else "not drifted"
        lines = [f"# Drift of {self.dataset} batch {self.batch}: {verdict}", "",
                 f"- {len(self.drifted_features)} of {len(self.features)} features drifted (a feature at p < "
                 f"{self.p_threshold / max(len(self.features), 1):.2g}: {self.p_threshold:g} over "
                 f"{len(self.features)} features, Bonferroni); share per group: "
                 + ", ".join(f"{group} {share:.2f}" for group, share in self.group_shares.items())
                 + f"; the batch drifts when a group reaches {self.threshold:g}"
                 + (f": **{', '.join(self.drifted_groups)}**" if self.drifted_groups else ""),
                 f"- reference: {ref['note']} ({ref['clips']} clips, dataset version {ref['dataset_version']})",
                 f"- batch: {self.batch_clips} clips" + (f"; {self.unprofiled} clips without features, left out"
                                                         if self.unprofiled else "")]
        if self.skipped:
            lines.append(f"- not measured on either side, skipped: {', '.join(self.skipped)}")
        if self.features:
            lines += ["", markdown_table([_row(f) for f in self.features],
                                         ["feature", "test", "statistic", "p-value", "reference", "batch", "drifted"])]
        lines += ["", "## The champion's predictions", ""]
        pred = self.predictions
        if "skipped" in pred:
            lines.append(f"Not compared: {pred['skipped']}.")
        else:
            lines.append(f"Predicted class shares of {pred['model']} on its test split ({pred['test_clips']} clips of "
                         f"{pred['test_speakers']} held-out speakers) and on the batch: {pred['test']} p = "
                         f"{_text(pred['p_value'])}, " + ("**drifted**." if pred["drifted"] else "not drifted."))
            classes = sorted(set(pred["reference_shares"] or {}) | set(pred["batch_shares"] or {}))
            lines += ["", markdown_table([{"class": c, "test split": (pred["reference_shares"] or {}).get(c, 0.0),
                                           "batch": (pred["batch_shares"] or {}).get(c, 0.0)} for c in classes])]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> tuple[Path, Path]:
        """``drift.json`` and ``drift.md`` in the batch's store folder (each replaced whole)."""
        write_atomic(folder / REPORT_JSON, json.dumps(self.to_dict(), indent=2).encode())
        write_atomic(folder / REPORT_MD, self.markdown().encode())
        return folder / REPORT_JSON, folder / REPORT_MD


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _side(value: float | dict | None) -> str:
    if isinstance(value, dict):
        top = sorted(value.items(), key=lambda item: -item[1])[:3]
        return f"{len(value)} categories: " + ", ".join(f"{k} {v:.2f}" for k, v in top) + (
            ", ..." if len(value) > 3 else "")
    return _text(value)


def _row(feature: FeatureDrift) -> dict:
    return {"feature": feature.name, "test": feature.test, "statistic": _text(feature.statistic),
            "p-value": _text(feature.p_value), "reference": _side(feature.reference), "batch": _side(feature.batch),
            "drifted": "yes" if feature.drifted else "no"}


def accepted_batches(dataset: str, paths: Paths) -> list[str]:
    """The dataset's batches with clips in the manifest, oldest first."""
    return _batches(load_dataset(dataset, paths))


def batch_drift(dataset: str, batch: str | None, paths: Paths, p_threshold: float = P_THRESHOLD,
                share_threshold: float = SHARE_THRESHOLD) -> DriftReport:
    """Measure ``batch`` (default: the newest accepted) of ``dataset`` against its reference and write the report
    into the batch's store folder. The preprocessing is the champion's (its features are the cached ones),
    else ``config.preprocessing()``. A first batch has no reference: its report says so and tests nothing."""
    started = time.perf_counter()
    manifest = load_dataset(dataset, paths)  # absolute paths; the manifest's (append) order
    batches = _batches(manifest)
    batch = batch or batches[-1]
    if batch not in batches:
        raise UnknownBatchError(f"{batch!r} is no accepted batch of {dataset} (accepted, oldest first: "
                                f"{', '.join(batches)})")
    found = _champion(dataset, paths)
    predictor, params = found if found else (None, None)
    cfg = predictor.extraction if predictor else preprocessing()
    reference = choose_reference(manifest, batch, predictor.card.dataset_version if predictor else None,
                                 predictor.card.model_version if predictor else None)
    new = manifest[manifest["batch"] == batch]
    report = DriftReport(dataset, batch, {"kind": reference.kind, "dataset_version": reference.dataset_version,
                                          "clips": len(reference.rows), "note": reference.note},
                         len(new), p_threshold, share_threshold)
    if reference.rows.empty:
        report.reference["note"] = "the dataset's first batch: nothing earlier to compare with"
        report.predictions = {"skipped": "nothing to compare with"}
    else:
        profiled = profiles(pd.concat([reference.rows, new]), paths, dataset, cfg)
        sides = [rows[["speaker", *CATEGORICAL_FEATURES, "clip_hash"]].join(profiled, on="clip_hash", how="inner")
                 for rows in (reference.rows, new)]
        report.unprofiled = len(reference.rows) + len(new) - sum(map(len, sides))
        report.features, report.skipped = compare(*sides, p_threshold)
        report.predictions = (prediction_drift(predictor, params, manifest, new, paths, p_threshold) if predictor
                              else {"skipped": "the dataset has no champion"})
    report.seconds = time.perf_counter() - started
    report.write(paths.datasets / dataset / batch)
    return report

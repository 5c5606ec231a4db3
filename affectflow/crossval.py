"""Speaker-independent k-fold cross-validation: every speaker is tested once, by a model that never heard them.

Folds come from ``splits.speaker_folds`` (whole speakers, stratified by emotion as far as they allow, and
by sex where every speaker's is known: RAVDESS's 4 folds hold 2 actresses and 2 actors each).
In each fold, validation speakers are carved from the training side for early stopping (and, with
``config.refit``, the epoch count of the refit): the test fold never steers training. Reported: each
fold's metrics, their mean and standard deviation, and the pooled metrics of all held-out predictions
(per-class recall over every clip, each predicted by the model that did not see its speaker).

With ``config.speaker_norm`` the test speakers' features are aligned with their own unlabelled audio
(``affectflow.speakers``); the same models are also scored on unaligned test clips (``unaligned``), what
a service that sees one clip of an unknown speaker gets, and aligned with only a few clips of their speaker
(``calibrated``, ``CALIBRATION_CLIPS``): what the service's speaker calibration (``affectflow.voices``) does
after as many.

Nested selection (``candidates``): in each fold every candidate configuration is fitted on the training
speakers and scored on the fold's validation speakers; the best one there (UAR, or mean CCC for a
regression-only model) is refitted and tested. The test speakers never choose: the reported numbers
estimate the whole procedure, selection included.

Mixed corpora (``extra``): clips of other corpora join every fold's training side and are never tested.
With the same seed, classes and test corpus the folds and validation speakers are those of the run without
them, so the two runs compare fold by fold whether another corpus's speakers help.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from affectflow.arrays import Arrays, concatenate, load_arrays
from affectflow.augment import copies_of, training_copies
from affectflow.config import ConfigError, PreprocessConfig, TrainConfig
from affectflow.evaluation import evaluate, predict_arrays, prediction_frame, score_predictions
from affectflow.groups import group_metrics, groups_markdown
from affectflow.labels import choose_classes, labelled_frame
from affectflow.speakers import population_of
from affectflow.splits import check_speaker_independence, speaker_folds, speaker_strata
from affectflow.tables import markdown_table, write_report_csv
from affectflow.training import Progress, TrainingResult, ready_for, refit, train
from affectflow.voices import calibrated, clip_sums, statistics

log = logging.getLogger(__name__)

FOLD = "fold"
# Metrics summarised across folds (when the model has them), besides per-class recall.
SUMMARY_METRICS: tuple[str, ...] = ("uar", "war", "macro_f1", "ccc_arousal", "ccc_valence", "ccc_mean", "mae_mean")
# Clips of a speaker the calibration has seen, for the service-view curve (1: the clip alone).
CALIBRATION_CLIPS: tuple[int, ...] = (1, 3, 5, 10, 20)


@dataclass
class Fold:
    index: int
    test_speakers: list[str]
    val_speakers: list[str]
    n_train: int
    n_val: int
    n_test: int
    best_epoch: int
    metrics: dict[str, float]
    selected: str = ""                      # nested selection: the candidate the validation speakers chose
    val_scores: dict[str, float] = field(default_factory=dict)   # each candidate's score on them
    linear_strength: float | None = None    # C of the linear head the validation speakers chose (``linear_head``)


@dataclass(frozen=True)
class Candidate:
    """A configuration nested selection may choose: ``name`` says how it differs from the base."""

    name: str
    config: TrainConfig


# Settings that shape the folds or their clips, the same for every candidate of a run: compare them across runs.
FIXED_PER_RUN = {"seed": "it sets the folds", "augment": "the copies are made once per run, for every fold",
                 "refit": "it is the run's procedure, not a candidate's"}


def candidate_grid(base: TrainConfig, spec: str) -> list[Candidate]:
    """Every combination of ``spec``'s values applied to ``base``: ``"dropout=0.3,0.5 hidden_units=64,128"``
    (space-separated settings, comma-separated values, ``TrainConfig`` names and types; a ``ConfigError``
    names a bad one)."""
    grid = {}
    for item in spec.split():
        name, _, values = item.partition("=")
        if not values:
            raise ConfigError(f"--select takes NAME=V1,V2 settings, got {item!r}")
        if name in FIXED_PER_RUN:
            raise ConfigError(f"--select cannot choose {name}: {FIXED_PER_RUN[name]}")
        grid[name] = [_value(text) for text in values.split(",")]
    if not grid:
        raise ConfigError("--select names no setting")
    result = []
    for combination in itertools.product(*grid.values()):
        changes = dict(zip(grid, combination, strict=True))
        config = TrainConfig.from_mapping({**base.to_dict(), **changes})
        result.append(Candidate(" ".join(f"{k}={v}" for k, v in changes.items()), config))
    return result


def _value(text: str) -> object:
    """A setting's value as TOML reads it (``0.3``, ``64``, ``true``), else the text itself (a name)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


@dataclass
class CrossValidation:
    classes: tuple[str, ...]
    config: TrainConfig
    folds: list[Fold]
    predictions: pd.DataFrame    # one row per clip: labels, held-out prediction, fold
    unaligned: pd.DataFrame | None = None  # the same models on test clips without speaker alignment
    seconds: float = 0.0
    # clips of their speaker the alignment used -> the same models' predictions (CALIBRATION_CLIPS)
    calibrated: dict[int, pd.DataFrame] = field(default_factory=dict)
    trained_with: tuple[str, ...] = ()   # other corpora added to every training side (``extra``), never tested

    def pooled(self, unaligned: bool = False) -> dict[str, float]:
        """Metrics over every clip's held-out prediction (one confusion matrix for all folds)."""
        predictions = self.unaligned if unaligned else self.predictions
        return score_predictions(predictions, self.classes)[0]

    def calibration_curve(self) -> dict[str, float]:
        """Pooled UAR by how much of its speaker the alignment knew: ``unaligned``, ``1``, ``5``, ``20``
        clips, ``all`` (the aligned evaluation)."""
        curve = {"unaligned": self.pooled(unaligned=True).get("uar", float("nan"))} if self.unaligned is not None else {}
        curve |= {str(n): score_predictions(p, self.classes)[0].get("uar", float("nan"))
                  for n, p in sorted(self.calibrated.items())}
        return curve | {"all": self.pooled().get("uar", float("nan"))}

    def confusion(self) -> np.ndarray | None:
        return score_predictions(self.predictions, self.classes)[1]

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean and sample standard deviation over folds of each headline metric and per-class recall."""
        names = [m for m in SUMMARY_METRICS if all(m in f.metrics for f in self.folds)]
        names += [f"recall_{c}" for c in self.classes if any(f"recall_{c}" in f.metrics for f in self.folds)]
        result = {}
        for name in names:
            values = np.array([f.metrics[name] for f in self.folds if name in f.metrics])
            result[name] = {"mean": float(values.mean()),
                            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                            "folds": len(values)}
        return result

    def flat_metrics(self, prefix: str = "cv_") -> dict[str, float]:
        """One number per name, for MLflow: ``cv_uar_mean``, ``cv_uar_std``, ``cv_pooled_uar``, ..."""
        result = {}
        for name, values in self.summary().items():
            result[f"{prefix}{name}_mean"], result[f"{prefix}{name}_std"] = values["mean"], values["std"]
        pooled = {f"{prefix}pooled_{k}": v for k, v in self.pooled().items() if np.isfinite(v)}
        if self.unaligned is not None:
            pooled[f"{prefix}pooled_unaligned_uar"] = self.pooled(unaligned=True).get("uar", float("nan"))
        pooled |= {f"{prefix}pooled_uar_calibrated_{n}": self.calibration_curve()[str(n)] for n in self.calibrated}
        return {**result, **pooled}

    def to_dict(self) -> dict:
        """JSON-ready: config, per-fold results, the summary and the pooled metrics."""
        result = {"classes": list(self.classes), "k": len(self.folds), "config": self.config.to_dict(),
                  "trained_with": list(self.trained_with),
                  "seconds": round(self.seconds, 1), "summary": self.summary(), "pooled": self.pooled(),
                  "folds": [vars(f) for f in self.folds]}
        if self.unaligned is not None:
            result["pooled_unaligned"] = self.pooled(unaligned=True)
        if self.calibrated:
            result["calibration_curve"] = self.calibration_curve()
        return result

    def markdown(self, title: str = "Speaker-independent cross-validation") -> str:
        """The summary (mean ± std over folds), the pooled per-class recall and one line per fold."""
        summary, pooled = self.summary(), self.pooled()
        metrics = [{"metric": name, "mean ± std over folds": f"{values['mean']:.3f} ± {values['std']:.3f}",
                    "pooled": pooled.get(name)} for name, values in summary.items()]
        folds = [{"fold": f.index, "test speakers": ", ".join(f.test_speakers),
                  "val speakers": ", ".join(f.val_speakers), "n test": f.n_test, "best epoch": f.best_epoch,
                  "linear head C": None if f.linear_strength is None else f"{f.linear_strength:g}",
                  "UAR": f.metrics.get("uar"), "WAR": f.metrics.get("war")}
                 for f in self.folds]
        linear = ["linear head C"] if any(f.linear_strength is not None for f in self.folds) else []
        extra = f"; every training side also held all of {', '.join(self.trained_with)}" if self.trained_with else ""
        lines = [f"### {title}", "", f"{len(self.folds)} folds, {len(self.predictions)} clips, classes: "
                 f"{', '.join(self.classes)}{extra}", "",
                 markdown_table(metrics, ["metric", "mean ± std over folds", "pooled"]), "",
                 markdown_table(folds, ["fold", "test speakers", "val speakers", "n test", "best epoch", *linear,
                                        "UAR", "WAR"])]
        if self.unaligned is not None:
            unaligned = self.pooled(unaligned=True)
            lines += ["", f"Test clips without speaker alignment (one clip of an unknown speaker): pooled UAR "
                      f"{unaligned.get('uar', float('nan')):.3f}, WAR {unaligned.get('war', float('nan')):.3f}."]
        if self.calibrated:
            curve = self.calibration_curve()
            lines += ["", "Pooled UAR by the clips of its speaker the alignment knew (the service's speaker "
                      "calibration after so many clips):", "",
                      markdown_table([{"clips": k, "UAR": v} for k, v in curve.items()], ["clips", "UAR"])]
        if any(f.selected for f in self.folds):
            names = list(self.folds[0].val_scores)
            rows = [{"fold": f.index, "chosen": f.selected, **f.val_scores} for f in self.folds]
            lines += ["", f"Nested selection: each fold's candidates scored on its validation speakers "
                      f"({SELECTION_NOTE}); the chosen one was refitted and tested.", "",
                      markdown_table(rows, ["fold", "chosen", *names])]
        lines += ["", groups_markdown(self.groups(), "Pooled held-out predictions by speaker and group")]
        return "\n".join(lines)

    def groups(self) -> pd.DataFrame:
        """``groups.group_metrics`` of the pooled held-out predictions: per speaker, sex, age band where known."""
        return group_metrics(self.predictions, self.classes)


MIN_VAL_SPEAKERS = 3


def val_speakers(speakers: Sequence[str], fraction: float, seed: int,
                 strata: Mapping[str, str] | None = None) -> list[str]:
    """A seeded ``fraction`` of ``speakers``, at least ``MIN_VAL_SPEAKERS`` where that leaves as many to
    train on (always at least one of each); with ``strata`` (speaker -> e.g. sex) taken from each stratum
    in turn, so early stopping listens to women and men alike.

    With few validation voices, early stopping (and the refit's epoch count) follows those voices. On
    EmoDB (6 speakers per training side, refit on) the 7-fold mean UAR over seeds 13-15 was 0.685 with
    one validation speaker (seeds 13, 14), 0.698 with two and 0.718 with three (docs/model.md).
    """
    unique = sorted(set(speakers))
    if len(unique) < 2:
        raise ValueError(f"carving validation speakers needs >= 2 training speakers, got {unique}")
    count = max(1, min(max(MIN_VAL_SPEAKERS, int(round(fraction * len(unique)))), len(unique) // 2))
    rng = np.random.default_rng(seed)
    order = rng.permutation(unique).tolist()
    if strata:
        queues = [[s for s in order if strata[s] == stratum] for stratum in rng.permutation(sorted(set(strata.values())))]
        order = [s for turn in itertools.zip_longest(*queues) for s in turn if s is not None]
    return sorted(order[:count])


def cross_validate(frame: pd.DataFrame, config: TrainConfig, k: int, classes: Sequence[str] | None = None,
                   progress: Progress = log.info, arrays: Arrays | None = None,
                   preprocess: PreprocessConfig | None = None, candidates: Sequence[Candidate] = (),
                   extra: Arrays | None = None) -> CrossValidation:
    """Train and test ``k`` times, each speaker in exactly one test fold.

    ``frame`` needs ``record`` (feature file), ``speaker``, ``emotion`` and optionally arousal/valence;
    ``arrays`` (already loaded for ``labelled_frame(frame, classes)``, in that order) skips reading
    the cache again. Seeds: the folds use ``config.seed``; fold ``i`` trains with ``config.seed + i``.
    ``preprocess``: the records' config, needed for ``config.augment`` (copies of each fold's training clips,
    ``affectflow.augment``) and ``config.finetune_backbone`` (its backbone is trained). ``candidates``: nested
    selection among these configurations in every fold (``config`` then only sets the folds' seed and refit).
    ``extra``: more training clips (``extra_training``), added to every fold's training speakers.
    """
    started = time.perf_counter()
    chosen = choose_classes(frame["emotion"], classes)
    frame = labelled_frame(frame, chosen)
    arrays = arrays if arrays is not None else load_arrays(frame, chosen)
    copies = _augmented(frame, chosen, config, preprocess, progress)
    backbone = preprocess.backbone if preprocess else ""
    speakers = frame["speaker"].astype(str)
    strata = speaker_strata(frame)
    sex_of = None if strata is None else dict(zip(speakers, strata, strict=True))
    folds, held_out, unaligned, calibrated = [], [], [], {}
    for index, (train_side, test) in enumerate(speaker_folds(speakers, frame["emotion"], k, config.seed, strata),
                                               start=1):
        validation = val_speakers(speakers.iloc[train_side], config.val_fraction, config.seed + index, sex_of)
        is_val = speakers.iloc[train_side].isin(validation).to_numpy()
        train_idx, val_idx = train_side[~is_val], train_side[is_val]
        parts = [arrays.subset(train_idx)]
        if copies is not None:
            parts.append(copies[1].subset(copies_of(frame.iloc[train_idx], copies[0]).index.to_numpy()))
        training = concatenate(parts + ([extra] if extra is not None else []))
        side = pd.Series("train", index=speakers.index)
        side.iloc[val_idx], side.iloc[test] = "val", "test"
        check_speaker_independence(speakers, side)
        test_speakers = sorted(speakers.iloc[test].unique())
        progress(f"fold {index}/{k}: test speakers {', '.join(test_speakers)}; validation speakers "
                 f"{', '.join(validation)}; training on {len(training)} clips")
        fold_config = replace(config, seed=config.seed + index)
        selected, val_scores = "", {}
        if candidates:
            result, fold_config, selected, val_scores = _select(candidates, training, arrays.subset(val_idx), chosen,
                                                                fold_config, backbone)
            progress(f"fold {index}/{k}: validation speakers chose {selected} ({_scores_text(val_scores)})")
        else:
            result = train(training, arrays.subset(val_idx), chosen, fold_config, progress=lambda _: None,
                           backbone=backbone)
        test_arrays = arrays.subset(test)
        ready = ready_for(result.model, test_arrays, fold_config)
        predictions = prediction_frame(frame.iloc[test], predict_arrays(result.model, ready), chosen)
        held_out.append(predictions.assign(**{FOLD: index}))
        if ready is not test_arrays:
            raw = prediction_frame(frame.iloc[test], predict_arrays(result.model, test_arrays), chosen)
            unaligned.append(raw.assign(**{FOLD: index}))
            for n, view in calibrated_views(result.model, test_arrays, CALIBRATION_CLIPS, fold_config.seed).items():
                calibrated.setdefault(n, []).append(
                    prediction_frame(frame.iloc[test], predict_arrays(result.model, view), chosen).assign(**{FOLD: index}))
        metrics = score_predictions(predictions, chosen)[0]
        folds.append(Fold(index, test_speakers, validation, len(training), len(val_idx), len(test),
                          result.best_epoch, metrics, selected, val_scores, result.linear_strength))
        progress(f"fold {index}/{k}: UAR {metrics.get('uar', float('nan')):.3f}, "
                 f"WAR {metrics.get('war', float('nan')):.3f} (best epoch {result.best_epoch})")
    return CrossValidation(chosen, config, folds, pd.concat(held_out, ignore_index=True),
                           pd.concat(unaligned, ignore_index=True) if unaligned else None,
                           time.perf_counter() - started,
                           {n: pd.concat(parts, ignore_index=True) for n, parts in calibrated.items()})


def _augmented(frame: pd.DataFrame, classes: Sequence[str], config: TrainConfig,
               preprocess: PreprocessConfig | None, progress: Progress) -> tuple[pd.DataFrame, Arrays] | None:
    """``config.augment`` copies of every clip (each joins the training side of the folds that train on its
    clip) and their arrays, indexed alike; None without augmentation."""
    if not config.augment:
        return None
    if preprocess is None:
        raise ConfigError("augment needs the preprocessing config of the records (cross_validate(preprocess=...))")
    copies = training_copies(frame, preprocess, config.augment, config.seed, progress).reset_index(drop=True)
    return copies, load_arrays(copies, classes)


def shared_classes(frames: Sequence[pd.DataFrame]) -> tuple[str, ...]:
    """The emotions every frame has, in canonical order: what corpora trained together can be scored on."""
    present = [set(frame["emotion"]) for frame in frames]
    return tuple(c for c in choose_classes(pd.concat([f["emotion"] for f in frames])) if all(c in p for p in present))


def extra_training(frames: Mapping[str, pd.DataFrame], classes: Sequence[str]) -> Arrays:
    """Clips of other corpora (name -> records frame) to add to every fold's training side: their ``classes``
    only, speakers named ``<corpus>:<speaker>`` so that no voice of one corpus merges with another's."""
    labelled = [labelled_frame(frame, classes).assign(speaker=lambda f, n=name: n + ":" + f["speaker"].astype(str))
                for name, frame in frames.items()]
    return load_arrays(pd.concat(labelled, ignore_index=True), classes)


SELECTION_NOTE = "UAR; mean CCC for a regression-only model"


def _selection_score(metrics: Mapping[str, float]) -> float:
    return float(metrics["uar"] if "uar" in metrics else metrics.get("ccc_mean", float("nan")))


def _scores_text(scores: Mapping[str, float]) -> str:
    return ", ".join(f"{name}: {value:.3f}" for name, value in scores.items())


def _select(candidates: Sequence[Candidate], train_set: Arrays, val_set: Arrays, classes: Sequence[str],
            fold_config: TrainConfig, backbone: str) -> tuple[TrainingResult, TrainConfig, str, dict[str, float]]:
    """Fit every candidate on ``train_set``, score each on ``val_set`` (the fold's validation speakers) and
    return the best one's result (refitted on both when ``fold_config.refit``), config, name and all scores."""
    fitted, scores = {}, {}
    for candidate in candidates:
        config = replace(candidate.config, seed=fold_config.seed, refit=False)
        result = train(train_set, val_set, classes, config, progress=lambda _: None, backbone=backbone)
        scores[candidate.name] = _selection_score(evaluate(result.model, ready_for(result.model, val_set, config),
                                                           classes)[0])
        fitted[candidate.name] = (result, replace(config, refit=fold_config.refit))
    best = max(scores, key=lambda name: np.nan_to_num(scores[name], nan=-np.inf))  # ties: the first listed
    result, config = fitted[best]
    if config.refit:
        result = refit(result, train_set, val_set, classes, config, progress=lambda _: None, backbone=backbone)
    return result, config, best, scores


def calibrated_views(model: keras.Model, arrays: Arrays, sizes: Sequence[int], seed: int) -> dict[int, Arrays]:
    """For each ``n`` in ``sizes``: every clip of ``arrays`` aligned as speaker calibration aligns it after ``n``
    clips of a new voice (``voices.calibrated``): with the running statistics of ``n`` clips of its speaker
    (itself and ``n - 1`` others drawn at random; all of them where the speaker has fewer). Needs
    ``arrays.speakers``."""
    population = population_of(model)
    rng = np.random.default_rng(seed)
    views = {}
    for n in sizes:
        clips = []
        for i, speaker in enumerate(arrays.speakers):
            same = np.flatnonzero(arrays.speakers == speaker)
            group = np.concatenate([[i], rng.permutation(same[same != i])[:n - 1]])
            own = statistics(clip_sums(arrays.subset(group)))
            clips.append(calibrated(arrays.subset(np.array([i])), own, len(group), population))
        views[n] = concatenate(clips)
    return views


def write_report(cv: CrossValidation, folder: Path) -> dict[str, Path]:
    """``crossval.json``, ``crossval.md``, ``predictions.csv``, ``groups.csv`` and the pooled confusion
    matrix in ``folder``."""
    from affectflow.reports import confusion_matrix_png

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "crossval.json", "markdown": folder / "crossval.md",
             "predictions": folder / "predictions.csv", "groups": folder / "groups.csv"}
    paths["json"].write_text(json.dumps(cv.to_dict(), indent=2, default=float))
    paths["markdown"].write_text(cv.markdown())
    write_report_csv(cv.predictions, paths["predictions"])  # speaker ids and paths neutralised for spreadsheets
    write_report_csv(cv.groups(), paths["groups"])
    matrix = cv.confusion()
    if matrix is not None:
        paths["confusion"] = confusion_matrix_png(matrix, cv.classes, folder / "confusion_matrix.png",
                                                  "pooled held-out predictions (rows: recall)")
    return paths

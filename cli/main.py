"""``affectflow``: one command over the pipeline stages, for people and for the Makefile.

Progress goes to stderr; commands that produce a result print it as JSON on the last stdout line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
import typing
from pathlib import Path

from affectflow.config import (
    AUDIO_FEATURE_SETS,
    DEFAULT_AUDIO_FEATURES,
    DEFAULT_POLICY,
    POLICIES,
    FaceBackendName,
    Paths,
    TrainConfig,
    activate_home,
    preprocessing,
    settings_file,
)
from affectflow.errors import UserError
from cli import drift as drift_command
from cli import quarantine

DEMO_DATASET = "synthetic"
DESCRIPTION = "affectflow: audio-visual emotion recognition from raw video batches to a served, retrainable model."
EPILOG = """\
All state lives under AFFECTFLOW_HOME (default ./.affectflow): inbox, quarantine, curated datasets,
feature cache, MLflow store, BentoML store and Prefect's embedded database.

typical session:
  affectflow demo                              # synthetic corpus -> ... -> Bento, end to end
  affectflow synth --out inbox-batch           # write a synthetic batch (media + labels.csv)
  affectflow datasets import emodb ../shared/data/emodb --out .affectflow/inbox/emodb-1
  affectflow preprocess clip.mp4 --face-backend landmarks
  affectflow ingest --inbox DIR                # validate and accept/quarantine every batch in DIR
  affectflow quarantine list                   # what failed and why; fix, then: quarantine release BATCH
  affectflow train --dataset synthetic         # train, register, promote, package
  affectflow train --dataset emodb --cv 7      # leave-one-speaker-out cross-validation report
  affectflow evaluate --model models:/affectflow-synthetic@champion --data BATCH_DIR --by speaker,sex --ablate
  affectflow predict clip.mp4 [--dataset NAME] # JSON prediction from the dataset's champion
  affectflow predict --timeline talk.mp4       # emotion per 3 s window of a long video, then a summary
  affectflow serve --dataset NAME --port 3000  # bentoml serve the dataset's champion (its newest Bento)
  affectflow models                            # champion, newest version and Bento per dataset
  affectflow models reconcile                  # build the champion's Bento where a killed run left none
  affectflow rollback --dataset NAME           # the previous champion serves again
  affectflow servers up                        # PostgreSQL + Prefect and MLflow servers + a worker (make up)

Errors you can fix (a bad option value, an unknown dataset, a missing file) are one line on stderr and exit
status 2; --debug shows the traceback.
"""
# Commands that run TensorFlow: it is started quietly first (affectflow.runtime).
TENSORFLOW_COMMANDS = frozenset({"demo", "train", "evaluate", "predict", "preprocess", "promote", "rollback"})
# Commands that run Prefect flows (with no server configured, Prefect starts a temporary one: cli.tether).
FLOW_COMMANDS = frozenset({"demo", "train", "ingest", "preprocess"})


def prepare_flows(paths: Paths) -> None:
    """Before a command runs Prefect flows: Prefect's temporary server must not outlive a killed command, and a
    fresh home's Prefect database is set up by one process at a time."""
    from cli.embedded_api import start_embedded_api
    from cli.tether import tether

    tether()
    start_embedded_api(paths)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _emit(result: object) -> None:
    print(json.dumps(result, default=str), flush=True)


def _bar(label: str):
    """A progress callback ``(done, total)`` drawing one updating line on a terminal; into a log file
    (no terminal), one line per tenth of the work instead of thousands of redraws."""
    if not sys.stderr.isatty():
        def log_line(done: int, total: int) -> None:
            if done == total or done % max(1, total // 10) == 0:
                print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)
        return log_line

    def update(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        end = "\n" if done >= total else ""
        print(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end=end, file=sys.stderr,
              flush=True)
    return update


def cmd_synth(args: argparse.Namespace) -> None:
    from affectflow.synth import write_synthetic_batch

    frame = write_synthetic_batch(Path(args.out), clips=args.clips, speakers=args.speakers, seed=args.seed,
                                  progress=_bar("synthesising"))
    _emit({"out": str(Path(args.out).resolve()), "clips": len(frame), "speakers": frame["speaker"].nunique(),
           "emotions": sorted(frame["emotion"].unique())})


def cmd_ingest(args: argparse.Namespace) -> None:
    from flows.ingest import ingest_flow

    results = ingest_flow(home=args.home, inbox=str(Path(args.inbox).resolve()) if args.inbox else None,
                          policy=args.policy)
    for result in results:
        line = f"{result['batch']}: {result['status']} ({result['n_clips']} clips, {result['n_new']} new)"
        if result["n_quarantined"]:
            line += f"; {result['n_quarantined']} rows quarantined in {result['quarantine']}"
        if result["status"] == "quarantined" or result["n_quarantined"]:
            line += f"; report: {result['quarantine'] or result['location']}/report.md"
        _say(line + (f"\n  Data Docs: {result['data_docs']}" if result["data_docs"] else ""))
    _emit(results)


def cmd_datasets_list(args: argparse.Namespace) -> None:
    from affectflow.datasets import ADAPTERS

    for adapter in ADAPTERS.values():
        options = ", ".join(f"--{name.replace('_', '-')}" for name in adapter.options) or "no options"
        _say(f"{adapter.name:10s} {adapter.description} ({options})")
    _emit(sorted(ADAPTERS))


def cmd_datasets_import(args: argparse.Namespace) -> None:
    from affectflow.datasets import ADAPTERS, import_dataset

    options = {name: getattr(args, name) for adapter in ADAPTERS.values() for name in adapter.options}
    frame = import_dataset(args.adapter, Path(args.source), Path(args.out), link=args.link, dataset=args.dataset,
                           progress=_bar("importing"), **options)
    skipped = frame.attrs.get("import", {}).get("skipped", {})
    _emit({"out": str(Path(args.out).resolve()), "clips": len(frame), "speakers": frame["speaker"].nunique(),
           "emotions": frame["emotion"].value_counts().to_dict(), "skipped": skipped})


def cmd_preprocess(args: argparse.Namespace) -> None:
    from affectflow.faces import check_backend
    from flows.preprocess import preprocessed

    cfg = preprocessing(args.face_backend, args.backbone, audio_features=args.audio_features)
    check_backend(cfg.face_backend)  # one line now, before a flow run starts
    failed = 0
    for line in preprocessed(args.paths, cfg, args.dask, args.workers, inspect_dir=args.inspect):
        failed += int(not line.get("summary") and not line["ok"])
        _emit(line)
    if failed:
        raise SystemExit(1)


def _summary_json(summary: dict) -> dict:
    keys = ("dataset", "dataset_version", "model_uri", "registered", "run_id", "promoted", "bento", "test_speakers")
    return {**{k: summary.get(k) for k in keys}, **{k: summary["metrics"].get(k) for k in
            ("n", "uar", "war", "macro_f1", "ccc_arousal", "ccc_valence")}, "metrics": summary["metrics"]}


def training_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the ``--config`` file, then the options given: the later wins."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name) is not None}
    return TrainConfig.from_mapping({"refit": bool(args.cv), **(settings_file(args.config) if args.config else {}),
                                     **given})


def cmd_train(args: argparse.Namespace) -> None:
    from affectflow.ingest import dataset_version

    training = training_config(args)
    paths = activate_home(args.home)
    others = args.with_datasets.split(",") if args.with_datasets else []
    for name in [args.dataset, *others]:  # an unknown dataset or a bad grid: one line, before any flow run
        dataset_version(name, paths)
    if args.select:
        from affectflow.crossval import candidate_grid

        candidate_grid(training, args.select)
    common = {"dataset": args.dataset, "training": training, "home": args.home,
              "classes": args.classes.split(",") if args.classes else None, "face_backend": args.face_backend,
              "backbone": args.backbone, "audio_features": args.audio_features}
    if not args.cv and (args.select or args.with_datasets):
        raise UserError("--select and --with go with --cv")
    if args.cv:
        if args.dask:
            raise UserError("--dask goes with training, not --cv")
        from flows.crossval import crossval_flow

        result = crossval_flow(k=args.cv, **common, select=args.select, with_datasets=others or None)
        _say(Path(result["report"], "crossval.md").read_text())
        _emit(result)
        return
    from flows.train import train_flow

    _emit(_summary_json(train_flow(**common, dask=args.dask)))


def _metric_lines(metrics: dict[str, float]) -> str:
    """``name value`` per line, three decimals: the metrics as a person reads them."""
    return "\n".join(f"  {name:22s} {value:.3f}" for name, value in metrics.items())


def cmd_evaluate(args: argparse.Namespace) -> None:
    from affectflow.breakdown import break_down
    from affectflow.evaluation import batch_arrays
    from affectflow.groups import missing_groups
    from affectflow.registry import configure, load_predictor

    paths = activate_home(args.home)
    configure(paths)
    predictor = load_predictor(args.model)
    align = predictor.card.speaker_norm if args.align_speakers is None else args.align_speakers
    frame, arrays, problems = batch_arrays(predictor, Path(args.data).resolve(), paths, align_speakers=align)
    for problem in problems:
        _say(f"skipped {problem}")
    groups = [g for g in args.by.split(",") if g] if args.by else []
    found = break_down(predictor.model, frame, arrays, predictor.card.classes, groups, ablation=args.ablate)
    metrics = found.metrics
    _say(f"{args.model} on {len(frame)} clips of {args.data}"
         f" (speakers {'aligned' if align else 'not aligned'}):\n{_metric_lines(metrics)}")
    for column in missing_groups(found.predictions, groups):
        _say(f"note: the batch has no '{column}' column; no metrics by {column}")
    for table in found.markdown("Batch").values():
        _say(table)
    result: dict = {**metrics, "n": int(metrics["n"]), "skipped": len(problems), "model": args.model,
                    "speakers_aligned": align}
    if found.groups is not None:
        result["groups"] = found.groups.to_dict("records")
    if found.ablation is not None:
        result["ablation"] = found.ablation.to_dict("records")
    _emit(result)


def cmd_predict(args: argparse.Namespace) -> None:
    from affectflow.cache import expand_clips
    from affectflow.packaging import choose_dataset
    from affectflow.registry import champion_datasets, champion_uri, configure, load_predictor
    from affectflow.voices import VoiceBook, book_path, check_voice

    if not args.timeline and (args.window is not None or args.hop is not None):
        raise UserError("--window and --hop go with --timeline")
    if args.timeline:  # bad lengths are refused before the model loads
        from affectflow.timeline import DEFAULT_HOP_S, DEFAULT_WINDOW_S, check_windows

        args.window = DEFAULT_WINDOW_S if args.window is None else args.window
        args.hop = DEFAULT_HOP_S if args.hop is None else args.hop
        check_windows(args.window, args.hop)
    paths = activate_home(args.home)
    configure(paths)
    clips = expand_clips(args.clips)
    if args.timeline and len(clips) != 1:
        raise UserError(f"--timeline takes one video, not {len(clips)} clips")
    if args.speaker is not None:
        if args.timeline:
            raise UserError("--speaker goes with clips, not --timeline")
        check_voice(args.speaker)
    predictor = load_predictor(args.model or champion_uri(choose_dataset(champion_datasets(), args.dataset,
                                                                         "champion")))
    if args.speaker is not None:  # the home keeps the voices the CLI has heard
        predictor.voices = VoiceBook(book_path(paths.home / "voices", predictor.card.dataset, predictor.card.preprocess))
    if args.timeline:
        _timeline(predictor, clips[0], args)
        return
    if len(clips) == 1:  # one clip: its prediction, or one error line (exit 2)
        _emit({"clip": str(clips[0]), **predictor.predict_clip(clips[0], args.speaker)})
        return
    failed = 0
    for clip in clips:  # the model is loaded once; each line says how long its clip took
        started = time.perf_counter()
        try:
            line = {"clip": str(clip), **predictor.predict_clip(clip, args.speaker)}
        except UserError as err:
            line, failed = {"clip": str(clip), "error": str(err)}, failed + 1
        _emit({**line, "seconds": round(time.perf_counter() - started, 3)})
    if failed:
        raise SystemExit(1)


def _timeline(predictor, clip: Path, args: argparse.Namespace) -> None:
    """``predict --timeline``: one JSON line per window, then the summary line (windows left out)."""
    from affectflow.timeline import timeline

    started = time.perf_counter()
    found = timeline(predictor, clip, args.window, args.hop, progress=_bar("windows"))
    answer = found.to_dict()
    for number, line in enumerate(answer.pop("windows")):
        _emit({"window": number, **line})
    _emit({"clip": str(clip), **answer, "seconds": round(time.perf_counter() - started, 3)})


def cmd_serve(args: argparse.Namespace) -> None:
    from affectflow.packaging import choose_dataset, serve_command, served_datasets

    paths = activate_home(args.home)
    if args.bento:
        tag = args.bento
    else:
        from affectflow.promotion import reconcile
        from affectflow.registry import champion_datasets, configure

        served = served_datasets()
        try:
            configure(paths)
            champions = champion_datasets()
        except Exception as err:  # noqa: BLE001 - a registry out of reach: serve what there is, and say so
            _say(f"warning: the model registry cannot be read ({' '.join(str(err).split())[:200]}); serving the "
                 f"newest Bento without checking that it serves the champion")
            tag = served[choose_dataset(sorted(served), args.dataset, "Bento")]
        else:
            dataset = choose_dataset(sorted(set(served) | set(champions)), args.dataset, "Bento")
            [found] = reconcile([dataset])  # a champion whose Bento was never built (a killed run) gets it now
            _say(found.note)
            if found.bento is None:
                raise UserError(f"nothing to serve for {dataset}: {found.note}")
            tag = found.bento
    command = serve_command(tag, args.port, args.host)
    _say(f"$ BENTOML_HOME={shlex.quote(os.environ['BENTOML_HOME'])} {shlex.join(command)}")
    # The server takes this process's place: a SIGTERM to `affectflow serve` reaches bentoml serve itself.
    os.execv(command[0], command)


def cmd_promote(args: argparse.Namespace) -> None:
    from affectflow.promotion import override
    from affectflow.registry import configure

    configure(activate_home(args.home))
    if args.command == "promote" and not args.version:
        raise UserError("promote needs --version N (rollback goes back to the previous champion by itself)")
    reason = args.reason or f"{args.command} by hand"
    model, bento = override(args.dataset, args.version, reason)
    _say(f"{model.uri} is now the champion of {args.dataset} ({reason}); bento {bento}")
    _emit({"dataset": args.dataset, "champion": model.uri, "bento": bento, "reason": reason})


def cmd_models(args: argparse.Namespace) -> None:
    from affectflow.packaging import newest_bentos
    from affectflow.registry import configure, models_overview

    configure(activate_home(args.home))
    if args.action == "reconcile":
        from affectflow.promotion import reconcile

        done = reconcile([args.dataset] if args.dataset else None)
        for found in done:
            _say(f"{found.dataset:<12} {found.note}")
        _emit([dataclasses.asdict(found) for found in done])
        return
    newest = newest_bentos()
    rows = models_overview({d: b.tag for d, b in newest.items()}, {d: b.model_version for d, b in newest.items()})
    rows = [row for row in rows if args.dataset in (None, row["dataset"])]
    for row in rows:
        served = (row["bento_model"] or "?").rsplit("/", 1)[-1]
        state = {True: "serves the champion", None: "", False: (
            f"MISMATCH: the service would answer from v{served}, predict from the champion; run "
            f"`affectflow models reconcile --dataset {row['dataset']}`" if row["bento"] else
            "no Bento: `affectflow models reconcile` builds it")}[row["agrees"]]
        _say(f"{row['dataset']:<12} champion {row['champion'] or '-':<26} latest {row['latest']:<26} "
             f"bento {row['bento'] or '-'}" + (f" (v{served})" if row["bento"] else "") + (f"  {state}" if state else ""))
    _emit(rows)


def cmd_servers(args: argparse.Namespace) -> None:
    from affectflow.servers import Stack

    stack = Stack(activate_home(args.home).home)
    if args.action == "up":
        state = stack.up(host=args.host, worker=not args.no_worker, progress=_say)
        _say("servers up; point this shell at them (clients on other machines: the first two, with this "
             "machine's address; docs/operations.md):")
        exports = {**stack.api_urls(state), "AFFECTFLOW_HOME": stack.home, "AFFECTFLOW_PROJECT_DIR": stack.project}
        for name, value in exports.items():
            print(f"export {name}={shlex.quote(str(value))}")
    elif args.action == "down":
        stack.down(progress=_say)
    elif args.action in ("backup", "restore"):
        if not args.dir:
            raise UserError(f"servers {args.action} needs --dir DIR")
        getattr(stack, args.action)(Path(args.dir).resolve(), progress=_say)
    else:
        for name, status in stack.status().items():
            print(f"{name:<18} {status}")


def cmd_demo(args: argparse.Namespace) -> None:
    from affectflow.ingest import list_datasets
    from affectflow.synth import write_synthetic_batch
    from flows.pipeline import pipeline_flow

    paths = activate_home(args.home)
    started = time.perf_counter()
    if DEMO_DATASET not in list_datasets(paths):
        batch = paths.inbox / f"synthetic-seed{args.seed}"
        _say(f"writing the built-in synthetic corpus to {batch}")
        write_synthetic_batch(batch, clips=args.clips, speakers=args.speakers, seed=args.seed,
                              progress=_bar("synthesising"))
    summary = pipeline_flow(dataset=DEMO_DATASET, training=TrainConfig(epochs=args.epochs), home=str(paths.home))
    elapsed = time.perf_counter() - started
    metrics = summary["metrics"]
    lines = [
        "", f"affectflow demo: done in {elapsed:.0f} s",
        f"  dataset          {DEMO_DATASET} version {summary['dataset_version']}",
        f"  test split       {int(metrics['n'])} clips of {summary['test_speakers']} speakers never seen in training",
        f"  test metrics     UAR {metrics['uar']:.3f}  WAR {metrics['war']:.3f}  macro-F1 {metrics['macro_f1']:.3f}"
        f"  CCC arousal {metrics['ccc_arousal']:.3f}  CCC valence {metrics['ccc_valence']:.3f}",
        f"  registered       {summary['registered']}",
        f"  champion         {summary['model_uri']} ({summary['promotion_reason']})",
        f"  bento            {summary['bento'] or 'unchanged (champion kept)'}",
        "", "next:",
        "  affectflow serve --port 3000          # then: curl -F video=@clip.mp4 http://127.0.0.1:3000/predict",
        f"  mlflow ui --backend-store-uri sqlite:///{paths.mlflow_db}",
        f"  PREFECT_HOME={paths.prefect_home} prefect server start   # runs, logs and artifacts",
    ]
    _say("\n".join(lines))
    _emit(_summary_json(summary) | {"seconds": round(elapsed, 1)})


def _add_adapter_options(parser: argparse.ArgumentParser) -> None:
    """One flag per adapter option (shared names share one parser); adapters check their own choices."""
    from affectflow.datasets import ADAPTERS

    seen: set[str] = set()
    for adapter in ADAPTERS.values():
        for name, option in adapter.options.items():
            if name in seen:
                continue
            seen.add(name)
            flag = f"--{name.replace('_', '-')}"
            if option.flag:
                parser.add_argument(flag, dest=name, action="store_const", const=True, default=None, help=option.help)
            else:
                parser.add_argument(flag, dest=name, type=option.parse, default=None, help=option.help)


def _add_preprocessing_options(parser: argparse.ArgumentParser, backbone_help: str) -> None:
    """``--face-backend``, ``--backbone`` and ``--audio-features``: the choices ``config.preprocessing`` takes,
    for preprocess and train."""
    parser.add_argument("--face-backend", default="landmarks", choices=typing.get_args(FaceBackendName),
                        help="landmarks: built-in dlib 68 points (default); openface: the FeatureExtraction binary "
                             "($AFFECTFLOW_OPENFACE_BIN); none: no face features")
    parser.add_argument("--backbone", metavar="MODEL_PATH", help=backbone_help)
    parser.add_argument("--audio-features", default=DEFAULT_AUDIO_FEATURES, choices=AUDIO_FEATURE_SETS,
                        help="mfcc: MFCC, deltas and log-mel frames; egemaps: openSMILE's eGeMAPS v02, "
                             "88 functionals per utterance (pitch, jitter, shimmer, loudness, formants; free for "
                             "research, education and private use only: commercial use needs a licence from "
                             "audEERING); mfcc+egemaps: both (default: 0.04 UAR better than MFCC alone on EmoDB and "
                             "RAVDESS, see docs/model.md); compare, mfcc+compare: openSMILE's ComParE 2016, 6373 "
                             "functionals per utterance (same licence) instead of eGeMAPS. Each set has its own "
                             "feature cache"),


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """One option per ``TrainConfig`` field, named like the field (``--learning-rate`` for ``learning_rate``,
    the key in a ``--config`` file and in the flows' ``training`` parameter)."""
    group = parser.add_argument_group("training settings (keys of a --config file; the train flow's 'training')")
    group.add_argument("--config", metavar="FILE", help="TOML or JSON file of training settings; options win over it")
    types = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag, default = f"--{field.name.replace('_', '-')}", field.default
        text = f"{field.metadata['help']} (default {default})"
        if field.name == "refit":
            text = f"{field.metadata['help']} (default: on with --cv, off otherwise)"
        if isinstance(default, bool):
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif typing.get_args(types[field.name]):  # a Literal: its values are the choices
            group.add_argument(flag, dest=field.name, choices=typing.get_args(types[field.name]), default=None,
                               help=text)
        else:
            group.add_argument(flag, dest=field.name, type=type(default), default=None,
                               metavar=type(default).__name__.upper(), help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affectflow", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="state folder (default: $AFFECTFLOW_HOME or ./.affectflow)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the whole pipeline end to end on the built-in synthetic corpus")
    demo.add_argument("--clips", type=int, default=360, help="synthetic clips to generate (default 360)")
    demo.add_argument("--speakers", type=int, default=12, help="synthetic speakers (default 12)")
    demo.add_argument("--epochs", type=int, default=40, help="maximum epochs; early stopping (default 40)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus (default 0)")
    demo.set_defaults(func=cmd_demo)

    synth = sub.add_parser("synth", help="write a synthetic audio-visual batch (clips + labels.csv)")
    synth.add_argument("--out", required=True, help="batch folder to create")
    synth.add_argument("--clips", type=int, default=240, help="number of clips (default 240)")
    synth.add_argument("--speakers", type=int, default=8, help="number of speakers (default 8)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.set_defaults(func=cmd_synth)

    datasets = sub.add_parser("datasets", help="corpus adapters: list them, import a corpus as a batch")
    datasets_sub = datasets.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    datasets_sub.add_parser("list", help="the adapters and their options").set_defaults(func=cmd_datasets_list)
    importer = datasets_sub.add_parser(
        "import", help="write a batch (media + labels.csv) from a corpus's native layout",
        description="Media are copied (or hard-linked with --link), never moved or modified. Options not "
                    "taken by the chosen adapter are rejected. Layouts and label mappings: docs/datasets.md.")
    importer.add_argument("adapter", help="crema-d, enterface, mafw, ravdess, emodb or csv")
    importer.add_argument("source", help="the corpus folder in its native layout")
    importer.add_argument("--out", required=True, help="batch folder to create, e.g. .affectflow/inbox/crema-d-1")
    importer.add_argument("--link", action="store_true", help="hard-link media instead of copying")
    importer.add_argument("--dataset", help="dataset name in the store (default: the adapter name)")
    _add_adapter_options(importer)
    importer.set_defaults(func=cmd_datasets_import)

    preprocess = sub.add_parser("preprocess", help="fill the feature cache for clips or batch folders (JSON lines)")
    preprocess.add_argument("paths", nargs="+", metavar="PATH", help="clips or folders of clips")
    _add_preprocessing_options(preprocess, "pre-trained video backbone (.keras file or SavedModel folder): cache its "
                                           "embeddings")
    preprocess.add_argument("--workers", type=int, default=1,
                            help="threads on this machine (default 1; 2 on 2 cores: 1.48x the clips/s), or with --dask local the "
                                 "cluster's worker processes")
    preprocess.add_argument("--dask", metavar="ADDRESS",
                            help="compute on a Dask cluster: a scheduler address (tcp://host:8786, started with `dask "
                                 "scheduler` and `dask worker`) or 'local' (a cluster on this machine). Workers need "
                                 "the project installed and the clips and the feature cache at the same absolute "
                                 "paths (shared storage); see README 'Scale out'")
    preprocess.add_argument("--inspect", metavar="DIR", help="also write an MFCC image and an AU overlay video per clip")
    preprocess.set_defaults(func=cmd_preprocess)

    ingest = sub.add_parser("ingest", help="validate inbox batches; accept into the store or quarantine")
    ingest.add_argument("--inbox", help="folder of batches (default: <home>/inbox)")
    ingest.add_argument("--policy", choices=POLICIES, default=DEFAULT_POLICY,
                        help="partial (default): rows that fail (a clip that does not decode, a label out of the "
                             "vocabulary, a repeated path, a label conflict) go to quarantine with their media, the "
                             "rest is accepted; a failure of the whole file quarantines the batch. whole: any "
                             "failure quarantines the whole batch")
    ingest.set_defaults(func=cmd_ingest)
    drift_command.register(sub)
    quarantine.register(sub, ingest=cmd_ingest, prepare=prepare_flows)

    train = sub.add_parser("train", help="train on a curated dataset, register in MLflow, promote, package")
    train.add_argument("--dataset", required=True, help="curated dataset name (see the ingest output)")
    train.add_argument("--classes", help="comma-separated class list; other clips are dropped and counted")
    train.add_argument("--cv", type=int, metavar="K",
                       help="instead of training one model: K-fold speaker-independent cross-validation (every "
                            "speaker tested once); prints mean ± std per metric, writes a report, registers nothing")
    train.add_argument("--select", metavar="GRID",
                       help="with --cv: choose training settings inside each fold by its validation speakers (nested: "
                            "the tested speakers never choose), e.g. \"dropout=0.3,0.5 hidden_units=64,128\" (every "
                            "combination is fitted in every fold)")
    train.add_argument("--with", dest="with_datasets", metavar="DATASETS",
                       help="with --cv: comma-separated curated datasets whose clips join every fold's training side "
                            "and are never tested, on the classes all share (unless --classes); with the same seed "
                            "the folds are those of the run without them, for a fold-by-fold comparison")
    _add_preprocessing_options(train, "pre-trained video backbone (.keras file or SavedModel folder), frozen: its "
                                      "embeddings are computed once and cached (see docs/model.md); "
                                      "--finetune-backbone trains it inside the model")
    train.add_argument("--dask", metavar="ADDRESS",
                       help="preprocess the dataset's clips on a Dask cluster (scheduler address tcp://host:8786, or "
                            "'local'); training itself runs here. Default: one thread per core of this machine")
    _add_training_options(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser(
        "evaluate", help="metrics of a model on a labelled batch folder (JSON), by group and per modality",
        description="Scores every usable clip of the batch (clips that cannot be decoded are listed and skipped).")
    evaluate.add_argument("--model", required=True, help="MLflow model URI, e.g. models:/affectflow-synthetic@champion")
    evaluate.add_argument("--data", required=True, help="batch folder with labels.csv and media")
    evaluate.add_argument("--by", metavar="COLUMNS",
                          help="also report metrics per value of these labels.csv columns, e.g. speaker,sex,age_band "
                               "(age_band is derived from an age column)")
    evaluate.add_argument("--ablate", action="store_true",
                          help="also score the model with each modality hidden (audio only, video only, ...)")
    evaluate.add_argument("--align-speakers", action=argparse.BooleanOptionalAction, default=None,
                          help="normalise each speaker's audio with their own clips first (default: as the model "
                               "was trained, i.e. on for models trained with speaker normalisation)")
    evaluate.set_defaults(func=cmd_evaluate)

    predict = sub.add_parser(
        "predict", help="predict emotion and [arousal, valence] for clips (JSON lines)",
        description="One clip: its prediction as JSON, or an error (exit 2). Several clips or folders: the "
                    "model is loaded once, one JSON line per clip with its time in seconds; clips that cannot "
                    "be used get an error line and the exit status is 1.")
    predict.add_argument("clips", nargs="+", metavar="CLIP", help="video or audio files, or folders of them")
    predict.add_argument("--model", help="MLflow model URI (default: the dataset's champion)")
    predict.add_argument("--dataset", help="whose champion to use (needed only when several datasets have one)")
    predict.add_argument("--speaker", metavar="ID",
                         help="calibrate to this voice (a person's or session's id of your choosing): each clip joins "
                              "the voice's label-free running statistics, kept in the home, and once a few clips of the "
                              "voice are heard is aligned with them (shrunk towards the training population's) as training "
                              "aligned each speaker; answers improve over the first clips of a voice "
                              "(models trained with speaker normalisation, the default)")
    predict.add_argument("--timeline", action="store_true",
                         help="emotion over time in one long video (up to 10 minutes): the model judges sliding "
                              "windows, each like a clip of its own; prints one JSON line per window (start, end, "
                              "emotion, probabilities, arousal/valence, modalities found, or why the window is "
                              "unusable, e.g. silence for an audio model), then a summary line (dominant emotion by "
                              "share of windows, mean probabilities and arousal/valence, windows without a usable "
                              "modality). The file is read once, a window at a time: memory does not grow with "
                              "its length")
    predict.add_argument("--window", type=float, metavar="S",
                         help="with --timeline: window length in seconds (default 3, from 0.5 to 10)")
    predict.add_argument("--hop", type=float, metavar="S",
                         help="with --timeline: seconds from one window's start to the next (default 1, from 0.5 "
                              "to the window length)")
    predict.set_defaults(func=cmd_predict)

    serve = sub.add_parser(
        "serve", help="serve a dataset's champion over HTTP (bentoml serve of its newest Bento)",
        description="Serves the Bento affectflow-<dataset>:latest, built when the dataset's champion was last "
                    "promoted. Prints the equivalent bentoml command (for a fresh shell or a container).")
    serve.add_argument("--dataset", help="whose champion to serve (needed only when several datasets have a Bento)")
    serve.add_argument("--bento", help="serve this Bento tag instead, e.g. affectflow-emodb:<version>")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.set_defaults(func=cmd_serve)

    for name, text in (("promote", "make a registered version the dataset's champion (a person's decision, "
                                   "recorded on the version), and build its Bento"),
                       ("rollback", "give the champion alias back to the previous champion (or --version N), "
                                    "and build its Bento")):
        override = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        override.add_argument("--dataset", required=True, help="whose champion")
        override.add_argument("--version", help="registered version number" + (" (required)" if name == "promote"
                                                                                else ""))
        override.add_argument("--reason", help="why (recorded on the version)")
        override.set_defaults(func=cmd_promote)

    models = sub.add_parser(
        "models", help="per dataset: the champion, the newest registered version, the Bento and whether they agree",
        description="Lists, per dataset, the champion, the newest registered version and the newest Bento with the "
                    "model version it serves, flagging a Bento that does not serve the champion (a run killed "
                    "after the champion moved, before its Bento was built). `models reconcile` builds the "
                    "champion's Bento where they differ (what `train` and `serve` also do first); idempotent.")
    models.add_argument("action", nargs="?", choices=["reconcile"],
                        help="reconcile: build a Bento from the champion wherever the newest Bento serves another "
                             "version (or there is none), and say what was done")
    models.add_argument("--dataset", help="only this dataset")
    models.set_defaults(func=cmd_models)

    servers = sub.add_parser(
        "servers", help="the operations stack: PostgreSQL, Prefect server, MLflow server, a worker",
        description="up: start PostgreSQL (a cluster under <home>/servers), the Prefect server and the MLflow "
                    "tracking server (both on that PostgreSQL, MLflow with proxied artifacts), the work pools, "
                    "the 'training' concurrency limit and a worker; prints the exports for clients. down: stop "
                    "them (data kept). status: what runs where. backup --dir DIR: both databases and MLflow's "
                    "artifacts into DIR (servers keep running). restore --dir DIR: replace them with a backup "
                    "(servers restarted). Runbook: docs/operations.md.")
    servers.add_argument("action", choices=["up", "down", "status", "backup", "restore"])
    servers.add_argument("--dir", help="backup/restore: the backup folder")
    servers.add_argument("--host", default="127.0.0.1",
                         help="address the Prefect and MLflow servers listen on (default 127.0.0.1; PostgreSQL "
                              "always stays on loopback)")
    servers.add_argument("--no-worker", action="store_true", help="up: start the servers but no worker")
    servers.set_defaults(func=cmd_servers)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        paths = activate_home(args.home)
        if args.command in TENSORFLOW_COMMANDS:
            from affectflow.runtime import gpus

            gpus()
        if args.command in FLOW_COMMANDS:
            prepare_flows(paths)
        args.func(args)
    except UserError as err:
        if args.debug:
            raise
        _say(f"error: {err}")
        raise SystemExit(2) from None
    except Exception as err:
        from affectflow.storage import ADVICE, storage_cause

        cause = storage_cause(err)
        if cause is None or args.debug:
            raise
        _say(f"error: {cause}: {type(err).__name__} ({' '.join(str(err).split())[:300]}); {ADVICE}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

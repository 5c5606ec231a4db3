"""``affectflow drift``: an accepted batch against the data its dataset's champion learnt from (docs/drift.md).

The Markdown report goes to stderr, the JSON summary (``drift.json``) to the last stdout line; both files are
written into the batch's store folder. No Prefect run: no artifact and no event (the ingest flow makes those).
"""

from __future__ import annotations

import argparse
import json
import sys

from affectflow.config import get_paths


def cmd_drift(args: argparse.Namespace) -> None:
    from affectflow.drift import batch_drift

    given = {name: getattr(args, name) for name in ("p_threshold", "share_threshold") if getattr(args, name) is not None}
    report = batch_drift(args.dataset, args.batch, get_paths(args.home), **given)
    print(report.markdown(), file=sys.stderr, flush=True)
    print(json.dumps(report.to_dict(), default=str), flush=True)


def register(sub: argparse._SubParsersAction) -> None:
    """The ``drift`` sub-command (its defaults live in ``affectflow.drift``, imported only when it runs)."""
    drift = sub.add_parser("drift", help="does an accepted batch look like the champion's training data? (report)")
    drift.add_argument("--dataset", required=True, help="curated dataset name")
    drift.add_argument("--batch", help="batch folder in the store (default: the newest accepted)")
    drift.add_argument("--p-threshold", type=float,
                       help="family-wise p-value: a feature drifts below it divided by the features tested "
                            "(Bonferroni; default 0.05)")
    drift.add_argument("--share-threshold", type=float,
                       help="the batch drifts when this share of the features of one group (voice, spectrum, "
                            "face, format, labels) does (default 0.5)")
    drift.set_defaults(func=cmd_drift)

"""``affectflow quarantine list|show|release``: see what failed, fix it in place, send it back."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from affectflow.config import DEFAULT_POLICY, POLICIES, get_paths

EPILOG = """\
A quarantined batch is a whole batch that failed, or the rows split off a batch whose other rows were
accepted (policy partial). Fix the files in quarantine/<batch>/ (re-encode a clip, correct or drop a row of its
labels.csv), then release it: it goes back to the inbox and is ingested again. Clips the dataset holds already
are not added twice.

  affectflow quarantine list
  affectflow quarantine show b1          # its report: each failing row and why, where its Data Docs are
  affectflow quarantine release b1       # back to the inbox, then ingest the inbox (--no-ingest: only move)
"""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_list(args: argparse.Namespace) -> None:
    from affectflow.quarantine import quarantined_batches
    from affectflow.tables import markdown_table

    batches = quarantined_batches(get_paths(args.home))
    if batches:
        _say(markdown_table([b.to_dict() for b in batches],
                            ["name", "dataset", "rows", "problems", "first_problem", "split_from", "since"]))
    else:
        _say(f"nothing in quarantine ({get_paths(args.home).quarantine})")
    print(json.dumps([b.to_dict() for b in batches], default=str), flush=True)


def cmd_show(args: argparse.Namespace) -> None:
    from affectflow.quarantine import quarantined
    from affectflow.validation import REPORT_MD

    batch = quarantined(args.batch, get_paths(args.home))
    report = batch.folder / REPORT_MD
    _say(report.read_text(encoding="utf-8") if report.is_file() else f"{batch.folder} holds no {REPORT_MD}")
    _say(f"files: {batch.folder}" + (f"\nData Docs: {batch.data_docs}" if batch.data_docs else ""))
    print(json.dumps(batch.to_dict(), default=str), flush=True)


def cmd_release(args: argparse.Namespace) -> None:
    from affectflow.quarantine import release

    target = release(args.batch, get_paths(args.home))
    _say(f"{args.batch}: back in the inbox as {target}")
    if args.no_ingest:
        print(json.dumps({"released": str(target)}), flush=True)
        return
    args.prepare(get_paths(args.home))
    args.ingest(argparse.Namespace(home=args.home, inbox=None, policy=args.policy))


def register(sub: argparse._SubParsersAction, ingest: Callable[[argparse.Namespace], None],
             prepare: Callable[..., None]) -> None:
    """Add ``quarantine`` and its actions to the command line; ``release`` then runs ``ingest`` (the ``ingest``
    command, after ``prepare(paths)`` readies Prefect) unless told not to."""
    quarantine = sub.add_parser("quarantine", help="list, show and release quarantined batches",
                                description=__doc__.split(":")[0] + ".", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = quarantine.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="every quarantined batch: rows, problems, the first one").set_defaults(
        func=cmd_list)
    show = actions.add_parser("show", help="a quarantined batch's report")
    show.add_argument("batch", help="its folder name in <home>/quarantine")
    show.set_defaults(func=cmd_show)
    release = actions.add_parser("release", help="move a fixed batch back to the inbox and ingest the inbox")
    release.add_argument("batch", help="its folder name in <home>/quarantine")
    release.add_argument("--no-ingest", action="store_true", help="only move it; the next ingest takes it")
    release.add_argument("--policy", choices=POLICIES, default=DEFAULT_POLICY,
                         help=f"ingest policy for what is released (default {DEFAULT_POLICY})")
    release.set_defaults(func=cmd_release, ingest=ingest, prepare=prepare)

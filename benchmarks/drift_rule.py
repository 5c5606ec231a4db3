"""How the drift verdict behaves on batches whose truth is known: ordinary batches of the synthetic generator
(other seeds, other people) must not drift; louder and higher voices, and a camera without faces, must.

Each batch is ingested into a fresh home and measured against every batch accepted before it (no champion),
as ``affectflow.drift.batch_drift`` does after an ingest. Prints one row per batch (group shares, drifted
features with p-values, verdict) and writes ``benchmarks/results/drift_rule.json``.

    .venv/bin/python benchmarks/drift_rule.py [--ordinary 8] [--clips 36]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from affectflow.config import activate_home  # noqa: E402
from affectflow.drift import batch_drift  # noqa: E402
from affectflow.ingest import ingest_inbox  # noqa: E402
from affectflow.synth import Shift, write_synthetic_batch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "drift_rule.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ordinary", type=int, default=8, help="ordinary batches after the first (default 8)")
    parser.add_argument("--clips", type=int, default=36, help="clips per batch, 6 speakers (default 36)")
    parser.add_argument("--first-seed", type=int, default=1, help="seed of the first ordinary batch (default 1)")
    args = parser.parse_args()
    shape = {"clips": args.clips, "speakers": 6, "seconds": 1.0, "size": 128}
    first = args.first_seed
    batches = [(f"ordinary-{seed}", seed, Shift()) for seed in range(first, first + args.ordinary + 1)]
    batches += [("loud", 100, Shift(gain_db=10.0, pitch_semitones=7.0)), ("noface", 101, Shift(faces=False))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = activate_home(Path(tmp) / "home")
        for number, (name, seed, shift) in enumerate(batches):
            write_synthetic_batch(home.inbox / name, seed=seed, shift=shift, **shape)
            (result,) = ingest_inbox(home)
            assert result.status == "accepted", result.reasons
            if number == 0:
                continue  # the first batch has nothing to be compared with
            started = time.perf_counter()
            report = batch_drift("synthetic", name, home)
            drifted = {f.name: f.p_value for f in report.features if f.drifted}
            rows.append({"batch": name, "reference_clips": report.reference["clips"],
                         "group_shares": {k: round(v, 3) for k, v in report.group_shares.items()},
                         "drifted_features": drifted, "drifted_groups": report.drifted_groups,
                         "drifted": report.drifted, "seconds": round(time.perf_counter() - started, 2)})
            print(f"{name:12s} groups {rows[-1]['group_shares']} drifted {report.drifted_groups or 'no'}: "
                  + ", ".join(f"{k} p={'presence' if v is None else f'{v:.2g}'}" for k, v in drifted.items()),
                  flush=True)
    ordinary = [r for r in rows if r["batch"].startswith("ordinary")]
    summary = {"batch_shape": shape, "rows": rows,
               "ordinary_batches_drifted": sum(r["drifted"] for r in ordinary), "ordinary_batches": len(ordinary),
               "shifted_batches_drifted": sum(r["drifted"] for r in rows if not r["batch"].startswith("ordinary"))}
    summary["first_seed"] = first
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"ordinary batches drifted: {summary['ordinary_batches_drifted']} of {len(ordinary)}; shifted batches "
          f"drifted: {summary['shifted_batches_drifted']} of 2; written to {RESULTS}")


if __name__ == "__main__":
    main()

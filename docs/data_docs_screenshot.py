"""The screenshot ``docs/screenshots/data-docs.png``: the GX Data Docs page of a real failing validation.

    python docs/data_docs_screenshot.py [--out docs/screenshots/data-docs.png]

Writes 12 synthetic clips (``affectflow.synth``), breaks two labels (an emotion outside the vocabulary, a
valence out of range), validates the batch into a temporary GX project (``validate_batch``) and has headless
Chromium take the page the report names. GX pages load Bootstrap, jQuery and Font Awesome from CDNs; offline, a
copy of the page loads Debian's packaged ones instead (``apt-get install chromium libjs-bootstrap4
fonts-font-awesome``; Font Awesome 4, hence the ``.fas`` rule).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from affectflow.synth import write_synthetic_batch
from affectflow.validation import validate_batch

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                  "--disable-background-networking", "--disable-component-update", "--virtual-time-budget=5000"]

PACKAGED = {"bootstrap.min.css": "/usr/share/javascript/bootstrap4/css/bootstrap.min.css",
            "font-awesome": "/usr/share/fonts-font-awesome/css/font-awesome.min.css",
            "jquery": "/usr/share/javascript/jquery/jquery.min.js",
            "bootstrap.min.js": "/usr/share/javascript/bootstrap4/js/bootstrap.min.js"}
FA4_SHIM = "<style>.fas { display: inline-block; font: normal normal normal 14px/1 FontAwesome; }</style>"


def offline_copy(page: Path) -> Path:
    """``page`` beside itself (its relative links still resolve) with CDN tags swapped for packaged files."""
    html = page.read_text(encoding="utf-8")
    for tag in re.findall(r"<(?:link|script)[^>]*(?:href|src)=\"https://[^>]*>", html):
        local = next((path for name, path in PACKAGED.items() if name in tag), None)
        html = html.replace(tag, "" if local is None else (
            f'<link rel="stylesheet" href="file://{local}"/>' if tag.startswith("<link") else
            f'<script src="file://{local}">'))
    site = next(folder for folder in page.parents if (folder / "index.html").is_file())
    html = re.sub(r'src="https://[^"]*/logo-long.png[^"]*"', f'src="{(site / "static/images/logo-long.png").as_uri()}"',
                  html)  # the page's logo is fetched from GX's web assets
    copy = page.with_name("offline-" + page.name)
    copy.write_text(html.replace("</head>", FA4_SHIM + "</head>", 1), encoding="utf-8")
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "screenshots" / "data-docs.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="affectflow-data-docs-") as scratch:
        batch = Path(scratch) / "batch-0412"
        write_synthetic_batch(batch, clips=12, speakers=2, seconds=1.0, size=64, dataset="demo")
        labels = pd.read_csv(batch / "labels.csv", dtype=str)
        labels.loc[3, "emotion"], labels.loc[7, "valence"] = "joy", "1.7"
        labels.to_csv(batch / "labels.csv", index=False)
        report = validate_batch(batch, Path(scratch) / "gx")
        print("\n".join(failure.describe() for failure in report.failures))
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1440,2300",
                            f"--screenshot={args.out.resolve()}", offline_copy(Path(report.data_docs)).as_uri()],
                           check=True, capture_output=True, timeout=120)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()

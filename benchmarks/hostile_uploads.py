"""What hostile uploads cost: time and peak memory of preprocessing each, against a normal clip, in one run.

    python benchmarks/hostile_uploads.py [--out benchmarks/results/hostile_uploads.json]

Each file goes through ``features.extract_features`` (what training and the service run on every clip) in a
fresh process; reported: the outcome (features, or the refusal and its reason), wall seconds, and the
process's peak resident memory against the same process on a normal 2 s clip. The files:

- normal: 2 s, 320x240, speech-like tone;
- long audio: a 2 s video carrying a 60-minute audio track (a few MB; before the header check, the whole
  track was decoded: +3.7 GB, ~1 min);
- huge frames: a 2 s 4000x4000 video (before: +2 GB, ~20 s);
- playlist: an HLS playlist naming a file of the server, and one naming a file that does not exist (before,
  the decoder opened the named file and the two errors differed: an oracle on the server's files);
- concat list: ffmpeg's concat format naming a server file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import imageio_ffmpeg

RESULTS = Path(__file__).resolve().parent / "results"
SERVER_FILE = "/etc/hostname"    # exists on every Linux machine

_MEASURE = """
import json, resource, sys, time
from affectflow.config import PreprocessConfig
from affectflow.features import extract_features
started = time.perf_counter()
try:
    extract_features(sys.argv[1], PreprocessConfig())
    outcome, error = "features", None
except Exception as err:
    outcome, error = type(err).__name__, str(err).replace(sys.argv[1], "<file>")
print(json.dumps({"outcome": outcome, "error": error, "seconds": round(time.perf_counter() - started, 3),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", *args], check=True)


def make_files(folder: Path) -> dict[str, Path]:
    """The normal clip and each hostile file, in ``folder``."""
    files = {name: folder / filename for name, filename in (
        ("normal", "normal.mp4"), ("long audio", "long_audio.mp4"), ("huge frames", "huge.mp4"),
        ("playlist naming a server file", "playlist.mp4"), ("playlist naming a missing file", "missing.mp4"),
        ("concat list", "concat.mp4"))}
    video = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=2"]
    _ffmpeg(*video, "-f", "lavfi", "-i", "sine=f=220:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", str(files["normal"]))
    tone = folder / "tone.aac"  # ten seconds, then looped by stream copy: an hour of audio costs no encoding
    _ffmpeg("-f", "lavfi", "-i", "sine=f=220:duration=10:sample_rate=16000", "-c:a", "aac", "-b:a", "16k", str(tone))
    _ffmpeg(*video, "-stream_loop", "-1", "-i", str(tone), "-map", "0:v", "-map", "1:a", "-t", "3600",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "copy", str(files["long audio"]))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=4000x4000:rate=5:duration=2", "-c:v", "libx264", "-preset",
            "ultrafast", "-pix_fmt", "yuv420p", str(files["huge frames"]))
    for name, target in (("playlist naming a server file", SERVER_FILE),
                         ("playlist naming a missing file", "/nonexistent/secret")):
        files[name].write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n")
    files["concat list"].write_text(f"ffconcat version 1.0\nfile '{SERVER_FILE}'\n")
    return files


def measure(path: Path, repo: Path | None = None) -> dict:
    """``extract_features`` on ``path`` in a fresh process (of the checkout ``repo``, else this one)."""
    cwd = repo or Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False,
                          env={**os.environ, "PYTHONPATH": str(cwd), "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        return {"outcome": f"crashed (exit {done.returncode})", "error": done.stderr.strip()[-300:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, help="measure another checkout (e.g. a worktree of an older commit)")
    parser.add_argument("--out", type=Path, default=RESULTS / "hostile_uploads.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp))
        rows = [{"file": name, "bytes": path.stat().st_size, **measure(path, args.repo)}
                for name, path in files.items()]
    normal = rows[0].get("peak_rss_mb", 0.0)
    for row in rows:
        if "peak_rss_mb" in row:
            row["extra_rss_mb"] = round(row["peak_rss_mb"] - normal, 1)
        print(json.dumps(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

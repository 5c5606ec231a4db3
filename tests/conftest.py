"""Shared fixtures: a temporary affectflow home and real generated clips (ffmpeg test sources)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One numba cache for every test home and server the session starts (a fresh cache JITs librosa for ~15 s);
# kept between runs. Set here, it counts as the user's setting, which affectflow homes leave alone.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "numba"))


@pytest.fixture(autouse=True)
def no_mlflow_uri_from_earlier_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow exports the tracking URI it is given; left over from another test's home, it would look like
    a user's own MLflow server to this test and to the processes it starts."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh AFFECTFLOW_HOME for one test; returns its ``Paths``."""
    from affectflow.config import get_paths

    monkeypatch.setenv("AFFECTFLOW_HOME", str(tmp_path / "home"))
    paths = get_paths().ensure()
    monkeypatch.setenv("BENTOML_HOME", str(paths.bentoml_home))
    return paths


MakeClip = Callable[..., Path]


@pytest.fixture
def make_clip(tmp_path: Path) -> MakeClip:
    """Factory writing a real clip with ffmpeg: moving test pattern and/or a sine tone.

    ``make_clip("a.mp4", seconds=1.0, size=(96, 96), fps=25, video=True, audio=True, folder=None)``
    """
    import imageio_ffmpeg

    def _make(name: str, seconds: float = 1.0, size: tuple[int, int] = (96, 96), fps: int = 25,
              video: bool = True, audio: bool = True, folder: Path | None = None,
              freq: int = 440) -> Path:
        out = (folder or tmp_path) / name
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error"]
        if video:
            cmd += ["-f", "lavfi", "-i", f"testsrc=size={size[0]}x{size[1]}:rate={fps}:duration={seconds}"]
        if audio:
            cmd += ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=16000:duration={seconds}"]
        if video:
            cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
        if audio:
            cmd += ["-c:a", "aac" if out.suffix != ".wav" else "pcm_s16le"]
        subprocess.run([*cmd, "-shortest", str(out)], check=True, capture_output=True)
        return out

    return _make


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict[str, Path]:
    """Tiny pre-trained backbones in every format a user may give (``support.export_backbones``)."""
    from support import export_backbones

    return export_backbones(tmp_path_factory.mktemp("backbones"))


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the session's flow runs (starting one costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests (marked ``slow``) first: with ``-n 2`` both workers start on one, instead of one
    of them ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

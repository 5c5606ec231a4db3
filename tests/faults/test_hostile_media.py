"""Hostile files refused from their headers, before anything is decoded, in training and serving alike
(``media.checked_header``, the first step of ``features.extract_features``). The files and the memory
measurement are benchmarks/hostile_uploads.py's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from affectflow.config import PreprocessConfig
from affectflow.features import extract_features
from affectflow.media import ClipTooLong, UnsafeMedia

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "hostile_uploads.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("hostile_uploads", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[object, dict[str, Path]]:
    bench = _benchmark()
    return bench, bench.make_files(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("name, error, reason", [
    ("long audio", ClipTooLong, "lasts 3600.0 s (its longest stream), over the 60 s limit"),
    ("huge frames", UnsafeMedia, "frames of 4000x4000 pixels, over the limit"),
    ("playlist naming a server file", UnsafeMedia, "playlists, concat lists and other files naming further"),
    ("playlist naming a missing file", UnsafeMedia, "playlists, concat lists and other files naming further"),
    ("concat list", UnsafeMedia, "playlists, concat lists and other files naming further"),
])
def test_hostile_file_is_refused_before_decoding(hostile, name, error, reason):
    _, files = hostile
    with pytest.raises(error) as refused:
        extract_features(files[name], PreprocessConfig())
    assert reason in str(refused.value)


def test_a_playlist_tells_nothing_about_the_servers_files(hostile):
    """The same answer whether the file a playlist names exists or not: no oracle on the server's files."""
    _, files = hostile
    answers = []
    for name in ("playlist naming a server file", "playlist naming a missing file"):
        with pytest.raises(UnsafeMedia) as refused:
            extract_features(files[name], PreprocessConfig())
        answers.append(str(refused.value).replace(str(files[name]), "<file>"))
    assert answers[0] == answers[1]


@pytest.mark.slow
def test_an_hour_of_audio_behind_a_short_video_costs_no_memory(hostile):
    """Before the header check this 7.5 MB file cost +3.5 GB and ~14 s: its whole audio track was decoded."""
    bench, files = hostile
    normal, hour = bench.measure(files["normal"]), bench.measure(files["long audio"])
    assert normal["outcome"] == "features" and hour["outcome"] == "ClipTooLong", (normal, hour)
    assert hour["peak_rss_mb"] < normal["peak_rss_mb"] + 50  # a normal 2 s clip's process, TensorFlow loaded

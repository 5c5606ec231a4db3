"""Timelines of long videos: the windowing arithmetic, windowed decoding that matches whole-clip decoding,
memory that stays bounded on a long clip, unusable windows, and `affectflow predict --timeline` on the real
20 s face video."""

from __future__ import annotations

import json
import math
import subprocess
import tracemalloc
from dataclasses import replace
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from support import shared_data

from affectflow.arrays import MODALITIES, TRAINING_INPUTS
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.features import blank_features, extract_features, stack_inputs
from affectflow.media import AudioStream, ClipTooLong, read_audio, read_sampled, sample_indices, stream_layout
from affectflow.model import build_model
from affectflow.predict import ModelCard, Predictor, UnusableClipError
from affectflow.timeline import (
    MAX_SECONDS,
    Window,
    WindowError,
    frame_indices,
    plan_windows,
    sample_range,
    timeline,
    window_features,
)

CLASSES = ("anger", "happiness", "sadness")
CHEAP = PreprocessConfig(num_frames=8, frame_size=32, face_backend="none")
FACE_VIDEO_SECONDS = 472 / (24000 / 1001)  # WolfgangLanger_Pexels.mp4: 472 frames at 23.976 fps = 19.686 s


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", *args], check=True, capture_output=True)


def make_model(cfg: PreprocessConfig, modalities: tuple[str, ...] = ("video", "audio", "face")):
    """A small untrained multitask model taking ``modalities`` in ``cfg``'s shapes (as test_serving builds)."""
    inputs = [name for name in TRAINING_INPUTS if any(name in MODALITIES[m] for m in modalities)]
    shapes = {name: array.shape[1:] for name, array in stack_inputs([blank_features(cfg)], inputs).items()}
    return build_model(CLASSES, shapes, TrainConfig(hidden_units=16))


def predictor(cfg: PreprocessConfig, modalities: tuple[str, ...] = ("video", "audio", "face")) -> Predictor:
    return Predictor(make_model(cfg, modalities), ModelCard(CLASSES, cfg, "multitask", model_version="t1"))


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """80 s of moving test pattern (320x240, 25 fps) with a tone: decoding all its frames would take 460 MB."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=80", "-f", "lavfi", "-i",
           "sine=frequency=300:sample_rate=16000:duration=80", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path))
    return path


# --- windowing arithmetic ----------------------------------------------------------------------------

def test_a_20_s_clip_has_18_windows_of_3_s_a_second_apart():
    windows = plan_windows(20.0)
    assert len(windows) == 18
    assert [w.start_s for w in windows] == list(range(18))
    assert all(w.end_s - w.start_s == 3.0 for w in windows) and windows[-1].end_s == 20.0


def test_an_uncovered_tail_gets_one_whole_window_ending_at_the_end():
    windows = plan_windows(FACE_VIDEO_SECONDS)
    assert len(windows) == 18
    assert windows[-2] == Window(16.0, 19.0)
    assert windows[-1].start_s == pytest.approx(16.686, abs=1e-3) and windows[-1].end_s == FACE_VIDEO_SECONDS
    assert plan_windows(4.5) == [Window(0, 3), Window(1, 4), Window(1.5, 4.5)]
    assert plan_windows(10.0, 3.0, 3.0) == [Window(0, 3), Window(3, 6), Window(6, 9), Window(7, 10)]
    assert plan_windows(9.0, 3.0, 3.0) == [Window(0, 3), Window(3, 6), Window(6, 9)]
    assert plan_windows(7.0, 2.0, 0.7)[3] == Window(2.1, 4.1)  # no 2.0999999999999996


def test_a_clip_shorter_than_a_window_is_one_window():
    assert plan_windows(2.0) == [Window(0.0, 2.0)]
    assert plan_windows(3.0) == [Window(0.0, 3.0)]


@pytest.mark.parametrize(("window", "hop", "says"), [
    (0.2, 0.5, "window must be 0.5 to 10 seconds"),
    (11.0, 1.0, "window must be 0.5 to 10 seconds"),
    (math.nan, 1.0, "window must be"),
    (3.0, 4.0, "hop must be 0.5 seconds to the window's 3"),
    (3.0, 0.1, "hop must be"),
    (3.0, math.inf, "hop must be"),
    (3.0, -1.0, "hop must be"),
])
def test_bad_window_or_hop_lengths_are_refused(window, hop, says):
    with pytest.raises(WindowError, match=says):
        plan_windows(60.0, window, hop)


def test_a_video_without_duration_has_no_windows():
    with pytest.raises(WindowError, match="has no windows"):
        plan_windows(0.0)


def test_each_window_samples_its_own_frames_and_audio():
    indices = frame_indices(Window(1.0, 4.0), fps=25.0, num_frames=500, count=16)
    np.testing.assert_array_equal(indices, 25 + sample_indices(75, 16))
    assert frame_indices(Window(0.0, 2.0), 25.0, 50, 16).tolist() == sample_indices(50, 16).tolist()
    last = frame_indices(Window(16.686, 19.686), 24000 / 1001, 472, 16)
    assert last.tolist() == (401 + sample_indices(71, 16)).tolist()  # frames 401-471: 16.72 s to the end
    assert sample_range(Window(1.0, 4.0), 16000) == (16000, 64000)


# --- windowed decoding -------------------------------------------------------------------------------

def test_a_window_over_a_whole_clip_gets_the_features_extraction_gives_the_clip(make_clip):
    clip = make_clip("whole.mp4", seconds=2.0, size=(160, 120))
    cfg = replace(CHEAP, audio_seconds=2.0)
    layout = stream_layout(clip)
    assert (layout.has_video, layout.has_audio, layout.num_frames) == (True, True, 50)
    [window] = plan_windows(layout.duration_s)
    [record] = window_features(clip, cfg, [window], layout)
    whole = extract_features(clip, cfg)
    for name in ("frames", "face", "face_crops", "face_present", "face_table"):  # same frames, same code
        np.testing.assert_array_equal(getattr(record, name), getattr(whole, name))
    assert (record.video_mask, record.audio_mask) == (whole.video_mask, whole.audio_mask) == (1.0, 1.0)
    # Audio: the window's 2 s from the ffmpeg pipe here; decord in extract_features, which also keeps the
    # encoder's padding past the end (48 ms of AAC frame): the same sound.
    assert record.audio_seconds == 2.0 and whole.audio_seconds == pytest.approx(2.0, abs=0.05)
    assert np.corrcoef(record.mfcc.ravel(), whole.mfcc.ravel())[0, 1] > 0.99


def test_windowed_frames_are_the_frames_a_clip_of_that_window_samples(make_clip):
    clip = make_clip("frames.mp4", seconds=5.0, size=(160, 120))
    layout = stream_layout(clip)
    windows = plan_windows(layout.duration_s)
    records = list(window_features(clip, CHEAP, windows, layout))
    assert len(records) == len(windows) == 3
    every = read_sampled(clip, layout.num_frames, 320).frames  # all 125 frames, decoded by decord
    for window, record in zip(windows, records):
        expected = extract_features_frames(every[frame_indices(window, layout.fps, layout.num_frames, 8)])
        np.testing.assert_array_equal(record.frames, expected)


def extract_features_frames(frames: np.ndarray) -> np.ndarray:
    from affectflow.features import model_frames
    from affectflow.media import SampledVideo

    return model_frames(SampledVideo(frames, np.arange(len(frames)), 25.0, 160, 120), CHEAP)


def test_the_audio_stream_gives_the_pipes_samples_window_by_window(make_clip):
    clip = make_clip("tone.mp4", seconds=4.0, freq=330)
    whole = read_audio(clip, 16000)
    with AudioStream(clip, 16000) as stream:
        for start, stop in ((0, 48000), (16000, 64000), (20000, 30000), (60000, 70000)):
            np.testing.assert_array_equal(stream.segment(start, stop), whole[start:stop])
        with pytest.raises(ValueError, match="read forward"):
            stream.segment(0, 100)
        assert stream.segment(200000, 210000).size == 0 and stream.error is None
    with AudioStream(make_clip("mute.mp4", seconds=1.0, audio=False), 16000) as stream:
        assert stream.segment(0, 16000).size == 0 and stream.error is None


def test_memory_stays_bounded_on_a_long_clip(long_clip):
    """80 s at 320x240: all its frames are 460 MB and its audio 5 MB; windows hold a few MB at a time."""
    layout = stream_layout(long_clip)
    assert layout.duration_s == pytest.approx(80.0) and layout.num_frames == 2000
    windows = plan_windows(layout.duration_s)
    tracemalloc.start()
    try:
        count = 0
        for record in window_features(long_clip, CHEAP, windows, layout):
            count += 1
            assert record.video_mask == 1.0 and record.audio_mask == 1.0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == len(windows) == 78
    assert peak < 20e6, f"peak Python allocations {peak / 1e6:.1f} MB"
    with AudioStream(long_clip, 16000) as stream:  # the audio held never grows past a window and one read
        for window in windows:
            stream.segment(*sample_range(window, 16000))
        assert stream.peak_samples <= 3 * 16000 + AudioStream.READ_SAMPLES


# --- with a model ------------------------------------------------------------------------------------

def test_an_over_long_video_is_refused_before_decoding(long_clip):
    with pytest.raises(ClipTooLong, match="lasts 80.0 s, over the 60 s limit of a timeline"):
        timeline(predictor(CHEAP), long_clip, max_seconds=60)
    assert MAX_SECONDS == 600.0


def test_silent_windows_are_unusable_for_an_audio_model(tmp_path):
    clip = tmp_path / "then-silence.mp4"  # 3 s of tone, then 4 s of digital silence
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x96:rate=25:duration=7", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=16000:duration=3,apad=whole_dur=7", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", "7", str(clip))
    found = timeline(predictor(CHEAP, ("audio",)), clip)
    spans = [(w.start_s, w.end_s) for w in found.windows]
    assert spans == [(0, 3), (1, 4), (2, 5), (3, 6), (4, 7)]
    assert [w.unusable is None for w in found.windows] == [True, True, True, False, False]
    silent = found.windows[-1]
    assert silent.emotion is None and silent.probabilities is None and not silent.found["audio"]
    assert silent.to_dict(found.modalities_used)["reason"] == "no speech (the audio track is missing or silent)"
    assert found.summary.windows == 5 and found.summary.usable_windows == 3 and found.summary.unusable_windows == 2
    assert found.summary.emotion in CLASSES and sum(found.summary.shares.values()) == pytest.approx(1.0)
    assert sum(found.summary.mean_probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert -1 <= found.summary.arousal <= 1 and -1 <= found.summary.valence <= 1
    answer = found.to_dict()
    assert answer["summary"]["unusable_windows"] == 2 and len(answer["windows"]) == 5
    json.dumps(answer)  # JSON-ready as it is


def test_an_audio_file_has_windows_without_video():
    speech = shared_data("emodb", "03a01Fa.wav")  # 2.0 s: shorter than a window
    assert stream_layout(speech).duration_s == pytest.approx(2.0, abs=0.01)
    found = timeline(predictor(CHEAP, ("audio",)), speech)
    [window] = found.windows
    assert (window.start_s, window.emotion in CLASSES) == (0.0, True)
    assert window.found == {"video": False, "audio": True, "face": False}


def test_a_video_with_no_usable_window_is_unusable(make_clip):
    with pytest.raises(UnusableClipError, match="nothing this model can use in any window: no speech"):
        timeline(predictor(CHEAP, ("audio",)), make_clip("mute.mp4", seconds=4.0, audio=False))


def save_mlflow_model(folder: Path, cfg: PreprocessConfig) -> str:
    """The small model as a local MLflow model folder, which ``--model`` takes like any MLflow URI."""
    import mlflow.tensorflow

    path = folder / "model"
    card = ModelCard(CLASSES, cfg, "multitask", model_version="t1")
    mlflow.tensorflow.save_model(make_model(cfg), str(path), metadata=card.to_dict(), pip_requirements=["tensorflow"])
    return str(path)


def cli_lines(argv: list[str], capsys) -> list[dict]:
    from cli.main import main

    main(argv)
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.slow
def test_predict_timeline_on_the_real_20_s_face_video(home, tmp_path, capsys):
    from cli.main import main

    video = shared_data("faces", "WolfgangLanger_Pexels.mp4")
    model = save_mlflow_model(tmp_path, PreprocessConfig())  # the default preprocessing: dlib landmarks
    base = ["--home", str(home.home), "predict", "--model", model]

    lines = cli_lines([*base, "--timeline", str(video)], capsys)
    windows, summary = lines[:-1], lines[-1]
    assert len(windows) == 18 and [w["window"] for w in windows] == list(range(18))
    assert summary["duration"] == pytest.approx(FACE_VIDEO_SECONDS, abs=1e-3) == 19.686
    assert (summary["window"], summary["hop"], summary["clip"]) == (3.0, 1.0, str(video))
    assert [w["start"] for w in windows] == [*range(17), 16.686] and windows[-1]["end"] == 19.686
    for window in windows:
        assert window["usable"] and window["emotion"] in CLASSES
        assert set(window["probabilities"]) == set(CLASSES)
        assert sum(window["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert -1 <= window["arousal"] <= 1 and -1 <= window["valence"] <= 1
        # A face in every window of this close-up; its audio track is digital silence.
        assert window["modalities"]["found"] == {"video": True, "audio": False, "face": True}
        assert window["modalities"]["used"] == ["video", "audio", "face"]
    assert summary["summary"]["windows"] == 18 and summary["summary"]["unusable_windows"] == 0
    assert summary["summary"]["emotion"] in CLASSES and summary["model_version"] == model

    lines = cli_lines([*base, "--timeline", "--window", "5", "--hop", "5", str(video)], capsys)
    assert [(w["start"], w["end"]) for w in lines[:-1]] == [(0, 5), (5, 10), (10, 15), (14.686, 19.686)]

    for argv, says in (([*base, "--window", "5", str(video)], "--window and --hop go with --timeline"),
                       ([*base, "--timeline", "--hop", "4", str(video)], "hop must be 0.5 seconds to the window's 3"),
                       ([*base, "--timeline", str(video), str(video)], "--timeline takes one video, not 2 clips")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and says in capsys.readouterr().err

    too_long = tmp_path / "eleven-minutes.mp4"  # cheap: 64x64 at 1 frame per second
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=1:duration=660", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(too_long))
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--timeline", str(too_long)])
    assert exit_info.value.code == 2
    assert "lasts 660.0 s, over the 600 s limit of a timeline" in capsys.readouterr().err

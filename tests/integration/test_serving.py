"""The serving path for real: the BentoML model store, a `bentoml serve` process over HTTP, a built Bento."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from support import shared_data

from affectflow.arrays import MODALITIES, TRAINING_INPUTS
from affectflow.config import PreprocessConfig, TrainConfig
from affectflow.features import blank_features, stack_inputs
from affectflow.model import build_model
from affectflow.packaging import (
    MODEL_TAG_ENV,
    PROJECT_ROOT,
    SERVICE_IMPORT,
    build_bento,
    save_to_bentoml,
    serve_command,
    served_datasets,
    stored_model,
)
from affectflow.predict import ModelCard, Predictor
from affectflow.servers import free_port
from affectflow.speakers import load_population
from affectflow.voices import MIN_CLIPS, VoiceBook

CLASSES = ("anger", "happiness", "sadness")
READY_TIMEOUT_S = 90


def save_model(model_version: str, dataset: str = "toy", modalities: tuple[str, ...] = ("video", "audio", "face"),
               speaker_norm: bool = False) -> str:
    """A small untrained multitask model of ``dataset`` taking ``modalities``, saved to the current BentoML
    store; returns its tag."""
    cfg = PreprocessConfig()
    inputs = [name for name in TRAINING_INPUTS if any(name in MODALITIES[m] for m in modalities)]
    shapes = {name: array.shape[1:] for name, array in stack_inputs([blank_features(cfg)], inputs).items()}
    model = build_model(CLASSES, shapes, TrainConfig(hidden_units=16))
    card = ModelCard(CLASSES, cfg, "multitask", model_version=model_version, dataset_version="test-ds",
                     dataset=dataset, speaker_norm=speaker_norm)
    return save_to_bentoml(model, card)


def bento_info(tag: str) -> dict:
    """``bentoml get TAG -o json``: what a user sees of a Bento."""
    import json

    out = subprocess.run([sys.executable, "-m", "bentoml", "get", tag, "-o", "json"], check=True,
                         capture_output=True, text=True, env={**os.environ, "BENTOML_DO_NOT_TRACK": "true"}).stdout
    return json.loads(out)


@pytest.fixture
def store(home, monkeypatch: pytest.MonkeyPatch):
    """The test home with BentoML's store inside it (BENTOML_HOME may point elsewhere in this process)."""
    monkeypatch.setenv("BENTOML_HOME", str(home.bentoml_home))
    return home


def server_env(home, **extra: str) -> dict[str, str]:
    """The server's environment: the test home (and the session's numba cache, from conftest)."""
    return {**os.environ, "AFFECTFLOW_HOME": str(home.home), "BENTOML_HOME": str(home.bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true", **extra}


def log_tail(log_path: Path) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])


def wait_ready(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_tail(log_path)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"server not ready after {READY_TIMEOUT_S} s:\n{log_tail(log_path)}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server and its workers: the whole process group it leads."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@contextmanager
def serving(cmd: list[str], port: int, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run a `bentoml serve` command until the block ends; yields its base URL once /readyz answers."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(proc, url, log_path)
            yield url
        finally:
            stop(proc)


@contextmanager
def serving_model(home, tag: str, log_path: Path, **env: str) -> Iterator[str]:
    """`bentoml serve` of the service's source code with the model ``tag`` (and ``env``), until the block ends;
    yields its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE_IMPORT, "--host", "127.0.0.1", "--port", str(port)]
    with serving(cmd, port, server_env(home, **{MODEL_TAG_ENV: tag}, **env), log_path) as url:
        yield url


def upload(url: str, content: bytes, content_type: str = "application/octet-stream") -> httpx.Response:
    """A multipart upload as curl sends it: ``curl -F video=@clip.mp4 URL/predict``."""
    return httpx.post(f"{url}/predict", files={"video": ("clip.mp4", content, content_type)}, timeout=60)


def test_saved_model_carries_its_card_and_loads_for_prediction(store, make_clip):
    tag = save_model("v1")

    stored = stored_model("affectflow-toy:latest")
    assert stored.tag == tag and tag.startswith("affectflow-toy:")  # one name per dataset
    assert stored.labels["model_version"] == "v1" and stored.labels["dataset"] == "toy"
    assert stored.labels["preprocess"] == PreprocessConfig().hash()
    assert stored.labels["classes"] == " ".join(CLASSES)
    predictor = Predictor.from_dir(stored.path, stored.metadata)
    assert predictor.card.classes == CLASSES
    result = predictor.predict_clip(make_clip("clip.mp4"))
    assert result["emotion"] in CLASSES and result["model_version"] == "v1"
    assert "calibration" not in result


def test_a_named_speaker_is_calibrated_with_the_clips_heard_so_far(store, make_clip, tmp_path):
    stored = stored_model(save_model("v1", speaker_norm=True))
    population = load_population(Path(stored.path))  # packaged beside the model for the request workers
    predictor = Predictor.from_dir(stored.path, stored.metadata)
    assert population.keys() == predictor.population.keys() == {"mfcc", "mfcc_deltas", "logmel"}
    predictor.voices = VoiceBook(tmp_path / "voices.sqlite")
    clips = [make_clip(f"clip{i}.mp4", seconds=1.0 + i / 4) for i in range(5)]
    plain = [predictor.predict_clip(clip) for clip in clips]
    heard = [predictor.predict_clip(clip, speaker="ann") for clip in clips]
    assert [answer["calibration"] for answer in heard] == [
        {"speaker": "ann", "clips": n, "aligned": n >= MIN_CLIPS} for n in range(1, 6)]
    assert heard[0]["probabilities"] == plain[0]["probabilities"]  # one clip says more about itself than the voice
    assert heard[MIN_CLIPS - 1]["probabilities"] != plain[MIN_CLIPS - 1]["probabilities"]  # aligned with the voice
    other = stored_model(save_model("v2"))
    unnormalised = Predictor.from_dir(other.path, other.metadata)
    unnormalised.voices = predictor.voices
    assert unnormalised.predict_clip(clips[0], speaker="ann")["calibration"]["clips"] == 0  # and says why


@pytest.mark.slow
def test_served_model_answers_uploads_and_rejects_unusable_files(store, make_clip, tmp_path):
    tag = save_model("v1", speaker_norm=True)
    clip = make_clip("clip.mp4", seconds=1.0).read_bytes()
    with serving_model(store, tag, tmp_path / "serve.log", AFFECTFLOW_VOICES_DIR=str(tmp_path / "voices")) as url:

        for content_type in ("application/octet-stream", "video/mp4"):
            response = upload(url, clip, content_type)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["emotion"] in CLASSES
            assert set(body["probabilities"]) == set(CLASSES)
            assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            assert -1.0 <= body["arousal"] <= 1.0 and -1.0 <= body["valence"] <= 1.0
            assert body["model_version"] == "v1"
            assert body["modalities"]["found"] == {"video": True, "audio": True, "face": False}  # test pattern
            assert {"video", "audio"} <= set(body["modalities"]["used"])

        garbage = upload(url, os.urandom(4096))
        assert garbage.status_code == 400
        assert "not a usable video" in garbage.json()["error"]

        empty = upload(url, b"")
        assert empty.status_code == 400
        assert "empty" in empty.json()["error"]

        card = httpx.post(f"{url}/metadata", timeout=10).json()
        assert card["classes"] == list(CLASSES) and card["model_tag"] == tag
        assert card["model_version"] == "v1" and card["dataset_version"] == "test-ds" and card["dataset"] == "toy"
        assert "iBUG 300-W" in " ".join(card["licences"].values()) and "audio" in card["modalities"]

        schema = httpx.get(f"{url}/docs.json", timeout=10).json()  # the Swagger page's source
        assert schema["info"]["title"] == "affectflow-toy-v1"  # whose model, which version
        answer = schema["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert {"emotion", "confidence", "probabilities", "modalities"} <= set(answer["properties"])  # typed

        metrics = httpx.get(f"{url}/metrics", timeout=10).text  # Prometheus, beyond BentoML's own
        assert "affectflow_predictions_total{emotion=" in metrics
        assert 'affectflow_rejected_uploads_total{reason="not decodable"} 2.0' in metrics
        assert 'affectflow_stage_seconds_count{stage="model"} 2.0' in metrics
        assert 'affectflow_stage_seconds_count{stage="decode+features"}' in metrics

        def as_speaker(speaker: str) -> httpx.Response:  # curl -F video=@clip.mp4 -F speaker=ann URL/predict
            return httpx.post(f"{url}/predict", files={"video": ("clip.mp4", clip, "video/mp4")},
                              data={"speaker": speaker}, timeout=60)

        assert [as_speaker("ann").json()["calibration"]["clips"] for _ in range(2)] == [1, 2]
        refused = as_speaker("ann\nbob")
        assert refused.status_code == 400 and "speaker id" in refused.json()["error"]
        forget = [httpx.post(f"{url}/forget_speaker", json={"speaker": "ann"}, timeout=10).json() for _ in range(2)]
        assert [f["forgotten"] for f in forget] == [True, False]
        assert as_speaker("ann").json()["calibration"]["clips"] == 1


@pytest.mark.slow
def test_bento_keeps_serving_its_pinned_model_after_newer_ones(store, tmp_path):
    pinned = save_model("v1")
    bento_tag = build_bento(pinned)
    newer = save_model("v2")
    other = build_bento(save_model("v1", dataset="other"))

    bento = bento_info(bento_tag)
    assert bento["name"] == "affectflow-toy" and bento["labels"]["dataset"] == "toy"
    assert [[model["tag"] for model in service["models"]] for service in bento["services"]] == [[pinned]] * 2
    assert served_datasets() == {"toy": bento_tag, "other": other}  # each dataset its own Bento
    port = free_port()
    env = server_env(store, **{MODEL_TAG_ENV: newer})
    with serving(serve_command(bento_tag, port), port, env, tmp_path / "serve.log") as url:
        card = httpx.post(f"{url}/metadata", timeout=10).json()
    assert card["model_tag"] == pinned and card["model_version"] == "v1"

    # `affectflow serve --dataset` serves that dataset's Bento; SIGTERM to it stops the whole server.
    port = free_port()
    cmd = [sys.executable, "-m", "cli", "--home", str(store.home), "serve", "--dataset", "other", "--port", str(port)]
    log_path = tmp_path / "affectflow-serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=server_env(store), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            wait_ready(proc, f"http://127.0.0.1:{port}", log_path)
            card = httpx.post(f"http://127.0.0.1:{port}/metadata", timeout=10).json()
            assert card["dataset"] == "other" and card["model_tag"] == bento_info(other)["services"][0]["models"][0]["tag"]
            proc.send_signal(signal.SIGTERM)  # to the command, not its process group: as a supervisor would
            proc.wait(timeout=60)
        finally:
            stop(proc)
    with socket.socket() as probe:  # nothing of the server is left listening
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert "BENTOML_HOME=" in log_path.read_text(errors="replace")  # the equivalent bentoml command, for a fresh shell


@pytest.mark.slow
def test_an_audio_model_answers_422_when_there_is_no_speech(store, make_clip, tmp_path):
    import imageio_ffmpeg

    tag = save_model("v1", dataset="speech", modalities=("audio",))
    silent = tmp_path / "silent.mp4"  # a video whose audio track is digital silence
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=96x96:rate=25:duration=1", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
                    "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(silent)], check=True)
    with serving_model(store, tag, tmp_path / "serve.log") as url:
        for clip in (silent, make_clip("mute.mp4", audio=False)):
            response = upload(url, clip.read_bytes())
            assert response.status_code == 422, response.text
            assert response.json() == {"error": "nothing this model can use: no speech (the audio track is "
                                                "missing or silent)", "modalities": {"used": ["audio"]}}
        speech = shared_data("emodb", "03a01Fa.wav")
        answered = upload(url, speech.read_bytes()).json()
        assert answered["emotion"] in CLASSES
        assert answered["modalities"] == {"used": ["audio"], "found": {"video": False, "audio": True, "face": False}}


def test_serving_needs_a_dataset_when_several_have_a_bento(store, capsys):
    from cli.main import main

    for dataset in ("toy", "other"):
        build_bento(save_model("v1", dataset=dataset))
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(store.home), "serve"])
    assert exit_info.value.code == 2
    assert "choose one with --dataset (other, toy)" in capsys.readouterr().err


@pytest.mark.slow
def test_timeline_answers_window_by_window_and_refuses_bad_requests(store, make_clip, tmp_path):
    tag = save_model("v1")
    clip = make_clip("talk.mp4", seconds=6.0).read_bytes()

    def timeline(content: bytes, **fields: str) -> httpx.Response:  # curl -F video=@talk.mp4 [-F window=2] URL/timeline
        return httpx.post(f"{url}/timeline", files={"video": ("talk.mp4", content, "application/octet-stream")},
                          data=fields, timeout=120)

    with serving_model(store, tag, tmp_path / "serve.log") as url:
        response = timeline(clip)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["duration"], body["window"], body["hop"], body["model_version"]) == (6.0, 3.0, 1.0, "v1")
        assert [(w["start"], w["end"]) for w in body["windows"]] == [(0, 3), (1, 4), (2, 5), (3, 6)]
        for window in body["windows"]:
            assert window["usable"] and window["emotion"] in CLASSES
            assert sum(window["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
            assert -1.0 <= window["arousal"] <= 1.0 and -1.0 <= window["valence"] <= 1.0
            assert window["modalities"]["found"] == {"video": True, "audio": True, "face": False}  # test pattern
        summary = body["summary"]
        assert (summary["windows"], summary["usable_windows"], summary["unusable_windows"]) == (4, 4, 0)
        assert summary["emotion"] in CLASSES and sum(summary["shares"].values()) == pytest.approx(1.0)
        schema = httpx.get(f"{url}/docs.json", timeout=10).json()["paths"]["/timeline"]["post"]["responses"]["200"]
        assert "windows" in schema["content"]["application/json"]["schema"]["properties"]  # typed in OpenAPI

        shorter = timeline(clip, window="2", hop="2").json()
        assert [(w["start"], w["end"]) for w in shorter["windows"]] == [(0, 2), (2, 4), (4, 6)]

        bad_hop = timeline(clip, hop="5")
        assert bad_hop.status_code == 400
        assert bad_hop.json() == {"error": "hop must be 0.5 seconds to the window's 3, not 5"}
        garbage = timeline(os.urandom(4096))
        assert garbage.status_code == 400 and "not a usable video" in garbage.json()["error"]
        assert "/tmp" not in garbage.json()["error"]  # the server's temp copy is not named


@pytest.mark.slow
def test_key_size_limit_and_malformed_uploads_get_4xx_with_a_reason(store, make_clip, tmp_path):
    """What BentoML alone answered with 500 (no multipart boundary; a URL where the file belongs, which it
    tried to fetch) is a 400 with a reason; a key, when set, is required everywhere but the health probes."""
    tag = save_model("v1")
    clip = make_clip("clip.mp4", seconds=1.0).read_bytes()
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n")
    env = {"AFFECTFLOW_API_KEY_FILE": str(key_file), "AFFECTFLOW_MAX_UPLOAD_MB": "1"}
    with serving_model(store, tag, tmp_path / "serve.log", **env) as url:
        assert upload(url, clip).status_code == 401
        wrong = httpx.post(f"{url}/metadata", headers={"Authorization": "Bearer guess"}, timeout=10)
        assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200  # probes need no key
        key = {"Authorization": "Bearer s3cret-key"}

        def post(route: str = "/predict", **kwargs) -> httpx.Response:
            return httpx.post(f"{url}{route}", headers={**key, **kwargs.pop("headers", {})}, timeout=60, **kwargs)

        answered = post(files={"video": ("clip.mp4", clip, "application/octet-stream")})
        assert answered.status_code == 200 and answered.json()["emotion"] in CLASSES
        refused = {
            "no boundary": post(content=b"xx", headers={"content-type": "multipart/form-data"}),
            "not multipart": post(json={"video": "/etc/passwd"}),
            "wrong field": post(files={"clip": ("clip.mp4", clip)}),
            "form-encoded URL": post(data={"video": "http://127.0.0.1:9/clip.mp4"}),
            "a URL, not a file": post(files={"video": (None, b"http://127.0.0.1:9/clip.mp4")}),  # a text part
            "a URL to /timeline": post("/timeline", files={"video": (None, b"http://127.0.0.1:9/clip.mp4")}),
            "broken multipart": post(content=b"--b\r\nContent-Disposition: form-data; name=video\r\n",
                                     headers={"content-type": "multipart/form-data; boundary=b"}),
        }
        for case, response in refused.items():
            assert response.status_code == 400, (case, response.status_code, response.text)
            assert response.json()["error"], case
        assert "fetches nothing" in refused["a URL, not a file"].json()["error"]
        playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n/etc/hostname\n#EXT-X-ENDLIST\n"
        hls = post(files={"video": ("clip.mp4", playlist, "application/octet-stream")})  # the decoder opens nothing
        assert hls.status_code == 400 and "playlists, concat lists" in hls.json()["error"]
        too_big = post(files={"video": ("big.mp4", os.urandom(1_200_000), "application/octet-stream")})
        assert too_big.status_code == 413 and "1 MB" in too_big.json()["error"]
        metrics = httpx.get(f"{url}/metrics", headers=key, timeout=10).text
        assert 'affectflow_rejected_uploads_total{reason="malformed request"} 7.0' in metrics
        assert 'affectflow_rejected_uploads_total{reason="unauthorised"}' in metrics
    assert "Traceback" not in (tmp_path / "serve.log").read_text(errors="replace")  # nothing failed inside

"""The OpenFace backend: its real CSV parses into our columns, a missing binary is a clear configuration error.

OpenFace itself cannot be installed here (no registry ships it). The runner is exercised with a stand-in
executable that records how it was called and writes the real OpenFace CSV from ../shared/data/faces,
as ``FeatureExtraction -out_dir`` would.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from support import shared_data

from affectflow.cache import preprocess_paths
from affectflow.config import PreprocessConfig, preprocessing
from affectflow.faces import FACE_COLUMNS, FaceBackendError, check_backend, get_backend, to_dataframe
from affectflow.faces.openface import (
    OPENFACE_BIN_ENV,
    OPENFACE_TIMEOUT_ENV,
    OpenFaceError,
    read_openface_csv,
    sampled_rows,
)
from affectflow.features import extract_features
from affectflow.media import read_sampled

CFG = dataclasses.replace(PreprocessConfig(), face_backend="openface")


@pytest.fixture(scope="module")
def openface_csv() -> Path:
    return shared_data("faces", "OpenFace_Test.csv")


def test_parser_strips_the_leading_space_of_every_header_name(openface_csv):
    assert openface_csv.read_text().splitlines()[0].startswith("frame, timestamp, confidence")
    frame = read_openface_csv(openface_csv)
    assert frame.shape == (100, 431)
    assert not [name for name in frame.columns if name != name.strip()]
    assert frame["frame"].tolist() == list(range(1, 101))
    assert frame["success"].isin([0, 1]).all()
    assert frame["pose_Tz"].iloc[0] == pytest.approx(597.876)


def test_openface_csv_and_landmarks_backend_share_the_column_names(openface_csv):
    parsed = read_openface_csv(openface_csv)
    video = read_sampled(shared_data("faces", "single_face.mp4"), 16, 320)
    built_in = to_dataframe(get_backend("landmarks").table(video, Path("single_face.mp4"), PreprocessConfig()))
    assert set(built_in.columns) <= set(parsed.columns)
    assert list(to_dataframe(sampled_rows(parsed, video)).columns) == list(built_in.columns) == list(FACE_COLUMNS)


def test_sampled_rows_are_the_csv_rows_of_the_sampled_frames(openface_csv):
    parsed = read_openface_csv(openface_csv)
    video = read_sampled(shared_data("faces", "single_face.mp4"), 16, 320)
    rows = to_dataframe(sampled_rows(parsed, video))
    assert rows["frame"].tolist() == (video.indices + 1).tolist()
    expected = parsed.set_index("frame").loc[video.indices + 1]
    np.testing.assert_allclose(rows["AU12_r"], expected["AU12_r"], rtol=1e-6)
    np.testing.assert_allclose(rows["x_30"], expected["x_30"], rtol=1e-6)
    np.testing.assert_allclose(rows["gaze_0_z"], expected["gaze_0_z"], rtol=1e-6)


def test_a_file_that_is_not_an_openface_csv_is_refused(tmp_path):
    other = tmp_path / "labels.csv"
    other.write_text("path,emotion\na.mp4,anger\n")
    with pytest.raises(OpenFaceError, match="labels.csv: not an OpenFace CSV"):
        read_openface_csv(other)


def test_missing_binary_is_a_configuration_error(monkeypatch, tmp_path):
    monkeypatch.delenv(OPENFACE_BIN_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FaceBackendError, match=f"FeatureExtraction binary was not found: set {OPENFACE_BIN_ENV}"):
        check_backend("openface")
    monkeypatch.setenv(OPENFACE_BIN_ENV, str(tmp_path / "nowhere" / "FeatureExtraction"))
    with pytest.raises(FaceBackendError, match="is not an executable file"):
        check_backend("openface")


def test_preprocess_refuses_a_missing_openface_before_reading_any_clip(monkeypatch, tmp_path):
    monkeypatch.setenv(OPENFACE_BIN_ENV, str(tmp_path / "FeatureExtraction"))
    with pytest.raises(FaceBackendError, match=OPENFACE_BIN_ENV):
        preprocess_paths([tmp_path / "clip.mp4"], preprocessing("openface"), cache_root=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def _stand_in(folder: Path, csv: Path, behaviour: str = "write") -> Path:
    """An executable named FeatureExtraction that logs its argv, then writes ``csv``, sleeps or fails."""
    script = folder / "FeatureExtraction"
    script.write_text(f"""#!{sys.executable}
import json, shutil, sys, time
from pathlib import Path
args = sys.argv[1:]
Path({str(folder / "argv.json")!r}).write_text(json.dumps(args))
if {behaviour!r} == "sleep":
    time.sleep(30)
if {behaviour!r} == "fail":
    sys.exit("Could not open the video file")
out = Path(args[args.index("-out_dir") + 1])
shutil.copy({str(csv)!r}, out / (Path(args[args.index("-f") + 1]).stem + ".csv"))
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_openface_backend_runs_the_binary_with_an_argument_list(monkeypatch, tmp_path, openface_csv):
    monkeypatch.setenv(OPENFACE_BIN_ENV, str(_stand_in(tmp_path, openface_csv)))
    clip = shared_data("faces", "single_face.mp4")
    features = extract_features(clip, CFG)

    args = json.loads((tmp_path / "argv.json").read_text())
    assert args[:2] == ["-f", str(clip.resolve())] and args[2] == "-out_dir"
    assert args[4:] == ["-aus", "-2Dfp", "-pose", "-gaze"]
    assert not Path(args[3]).exists()  # the temporary output folder is gone
    parsed = read_openface_csv(openface_csv)
    sampled = parsed.set_index("frame").loc[to_dataframe(features.face_table)["frame"].to_numpy()]
    np.testing.assert_array_equal(features.face_present, sampled["success"].to_numpy(np.float32))
    assert features.face_frames > 0 and np.isfinite(features.face).all()
    assert features.face[features.face_present == 1].any()


@pytest.mark.parametrize(("behaviour", "reason"), [("sleep", "did not finish within 1 s"),
                                                   ("fail", "exited with status 1 .Could not open the video")])
def test_openface_failures_name_the_clip_and_the_reason(monkeypatch, tmp_path, openface_csv, behaviour, reason):
    monkeypatch.setenv(OPENFACE_BIN_ENV, str(_stand_in(tmp_path, openface_csv, behaviour)))
    monkeypatch.setenv(OPENFACE_TIMEOUT_ENV, "1")
    with pytest.raises(OpenFaceError, match=f"single_face.mp4: OpenFace {reason}"):
        extract_features(shared_data("faces", "single_face.mp4"), CFG)


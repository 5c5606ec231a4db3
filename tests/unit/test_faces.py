"""Face backends on real video: faces found where there are faces, masks where there are none, sane geometry."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
from support import shared_data

from affectflow.config import PreprocessConfig
from affectflow.faces import (
    FACE_COLUMNS,
    FACE_FEATURES,
    FaceBackendError,
    analyse_faces,
    check_backend,
    get_backend,
    to_dataframe,
)
from affectflow.faces.columns import LANDMARK_COUNT, POSE_COLUMNS
from affectflow.faces.landmarks import ESTIMATED_COLUMNS
from affectflow.faces.pose import FACE_3D, camera_matrix, head_pose
from affectflow.features import extract_features
from affectflow.media import SampledVideo, read_sampled

CFG = PreprocessConfig()


@pytest.fixture(scope="module")
def single_face() -> SampledVideo:
    return read_sampled(shared_data("faces", "single_face.mp4"), CFG.num_frames, CFG.face_width)


@pytest.fixture(scope="module")
def single_face_table(single_face) -> np.ndarray:
    return get_backend("landmarks").table(single_face, shared_data("faces", "single_face.mp4"), CFG)


def _column(table: np.ndarray, name: str) -> np.ndarray:
    return table[:, FACE_COLUMNS.index(name)]


def test_a_face_is_found_in_every_sampled_frame(single_face_table, single_face):
    frame = to_dataframe(single_face_table)
    assert list(frame.columns) == list(FACE_COLUMNS)
    assert frame["success"].tolist() == [1] * CFG.num_frames
    assert frame["frame"].tolist() == (single_face.indices + 1).tolist()
    assert frame["timestamp"].to_numpy() == pytest.approx(single_face.indices / single_face.fps, abs=1e-5)
    assert ((frame["confidence"] > 0.5) & (frame["confidence"] < 1)).all()


def test_68_landmarks_lie_inside_the_source_frame(single_face_table, single_face):
    xs = single_face_table[:, FACE_COLUMNS.index("x_0"):FACE_COLUMNS.index("x_0") + LANDMARK_COUNT]
    ys = single_face_table[:, FACE_COLUMNS.index("y_0"):FACE_COLUMNS.index("y_0") + LANDMARK_COUNT]
    assert xs.shape == ys.shape == (CFG.num_frames, 68)
    assert (single_face.source_width, single_face.source_height) == (640, 360)
    assert (xs >= 0).all() and (xs < 640).all() and (ys >= 0).all() and (ys < 360).all()


def test_head_pose_is_finite_and_near_frontal(single_face_table):
    pose = single_face_table[:, [FACE_COLUMNS.index(name) for name in POSE_COLUMNS]]
    assert np.isfinite(pose).all()
    assert (pose[:, 2] > 100).all() and (pose[:, 2] < 2000).all()  # a face 0.1-2 m from the camera
    assert np.abs(pose[:, 3:]).max() < 0.6  # this speaker faces the camera: under ~35 degrees


def test_geometric_action_units_follow_the_smile(single_face_table):
    smile, lips_part = _column(single_face_table, "AU12_r"), _column(single_face_table, "AU25_r")
    assert ((smile >= 0) & (smile <= 5)).all()
    assert smile[0] < 1 and smile[-6:].max() > 2  # neutral at the start, smiling with teeth at the end
    assert lips_part[-6:].max() > 1
    np.testing.assert_array_equal(_column(single_face_table, "AU12_c"), (smile >= 1).astype(np.float32))


def test_columns_the_backend_does_not_estimate_stay_nan(single_face_table):
    estimated = {"frame", "timestamp", "confidence", "success", *ESTIMATED_COLUMNS}
    for name in FACE_COLUMNS:
        column = _column(single_face_table, name)
        assert np.isfinite(column).all() if name in estimated else np.isnan(column).all(), name


def test_no_face_video_gives_masks_0_and_zeros():
    clip = shared_data("faces", "no_face.mp4")
    features = extract_features(clip, CFG)
    assert features.video_mask == 1.0
    assert features.face_frames == 0 and not features.face_present.any()
    assert not features.face.any() and not features.face_crops.any()
    frame = to_dataframe(features.face_table)
    assert frame["success"].tolist() == [0] * CFG.num_frames
    assert (frame["x_0"] == 0).all() and frame["gaze_0_x"].isna().all()  # zeros as OpenFace writes; NaN: not estimated


def test_model_inputs_from_a_face(single_face_table, single_face):
    faces = analyse_faces(single_face, shared_data("faces", "single_face.mp4"), CFG)
    assert faces.present.tolist() == [1.0] * CFG.num_frames
    assert faces.features.shape == (CFG.num_frames, len(FACE_FEATURES)) == (16, 151)
    assert np.isfinite(faces.features).all()
    named = dict(zip(FACE_FEATURES, faces.features[0]))
    left_eye = np.mean([named[f"shape_x_{i}"] for i in range(36, 42)])
    right_eye = np.mean([named[f"shape_x_{i}"] for i in range(42, 48)])
    assert (left_eye, right_eye) == (pytest.approx(-0.5, abs=1e-4), pytest.approx(0.5, abs=1e-4))
    assert 1.4 < named["shape_y_8"] < 2.2  # the chin, in interocular distances below the eyes
    assert 0 <= min(named[f"{au}_r/5"] for au in ("AU01", "AU12", "AU45")) <= 1
    assert faces.crops.shape == (16, 64, 64) and faces.crops.dtype == np.uint8


def test_rolling_the_image_changes_roll_not_the_aligned_shape(single_face, single_face_table):
    degrees = 15.0
    height, width = single_face.frames.shape[1:3]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    rolled = dataclasses.replace(single_face, frames=np.stack([cv2.warpAffine(f, turn, (width, height))
                                                               for f in single_face.frames]))
    path = shared_data("faces", "single_face.mp4")
    before, after = analyse_faces(single_face, path, CFG), analyse_faces(rolled, path, CFG)
    assert after.present.all()
    roll = FACE_FEATURES.index("pose_Rz")
    change = np.median(after.features[:, roll] - before.features[:, roll])
    assert abs(change) == pytest.approx(math.radians(degrees), abs=0.05)
    shape = slice(FACE_FEATURES.index("shape_x_0"), None)
    assert np.median(np.abs(after.features[:, shape] - before.features[:, shape])) < 0.05


def test_head_pose_recovers_a_known_pose():
    rotation = np.array([0.2, -0.3, 0.1])  # pitch, yaw, roll
    rx, ry, rz = (cv2.Rodrigues(np.eye(3)[i] * rotation[i])[0] for i in range(3))
    rvec, _ = cv2.Rodrigues(rx @ ry @ rz)
    translation = np.array([30.0, -20.0, 600.0])
    projected, _ = cv2.projectPoints(FACE_3D, rvec, translation, camera_matrix(640, 480), None)
    points = np.zeros((68, 2))
    points[[30, 8, 36, 45, 48, 54]] = projected[:, 0]
    pose = head_pose(points, 640, 480)
    np.testing.assert_allclose(pose[:3], translation, atol=0.5)
    np.testing.assert_allclose(pose[3:], rotation, atol=1e-3)


def test_backend_none_does_no_face_work():
    cfg = dataclasses.replace(CFG, face_backend="none")
    features = extract_features(shared_data("faces", "single_face.mp4"), cfg)
    assert features.video_mask == 1.0 and features.face_frames == 0
    assert not features.face.any() and not features.face_crops.any()
    assert cfg.hash() != CFG.hash()


def test_face_settings_change_the_config_hash():
    for change in ({"face_backend": "none"}, {"face_crop_size": 48}, {"face_width": 480}):
        assert dataclasses.replace(CFG, **change).hash() != CFG.hash()


def test_unknown_backend_is_a_configuration_error():
    with pytest.raises(FaceBackendError, match="unknown face backend 'mediapipe'.*landmarks, openface, none"):
        check_backend("mediapipe")
    assert get_backend("none").name == "none"

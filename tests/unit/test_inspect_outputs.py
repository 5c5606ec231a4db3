"""The original project's outputs on request: an MFCC image and an overlay video per clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from decord import VideoReader
from support import shared_data

from affectflow.cache import preprocess_paths
from affectflow.config import PreprocessConfig
from affectflow.faces.columns import COLUMN_INDEX
from affectflow.features import extract_features
from affectflow.inspect_outputs import OVERLAY_FPS, active_units, draw_face, write_inspection

CFG = PreprocessConfig()


def test_face_clip_gets_an_mfcc_image_and_an_overlay_video(tmp_path):
    clip = shared_data("faces", "single_face.mp4")
    record = extract_features(clip, CFG)
    image, video = map(tmp_path.joinpath, ("single_face.mfcc.png", "single_face.overlay.mp4"))
    assert write_inspection(clip, record, tmp_path, CFG) == [str(image), str(video)]
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reader = VideoReader(str(video))
    assert (len(reader), reader.get_avg_fps()) == (CFG.num_frames, OVERLAY_FPS)
    assert reader[0].shape == (180, 320, 3)


def test_overlay_draws_landmarks_only_where_a_face_was_found():
    record = extract_features(shared_data("faces", "single_face.mp4"), CFG)
    frame = np.zeros((180, 320, 3), dtype=np.uint8)
    drawn = draw_face(frame, record.face_table[-1], scale=0.5)
    assert (drawn[..., 1] == 255).sum() > 68  # green landmark dots
    missing = record.face_table[-1].copy()
    missing[COLUMN_INDEX["success"]] = 0.0
    assert (draw_face(frame, missing, scale=0.5)[..., 1] == 255).sum() == 0
    assert "AU12" in active_units(record.face_table[-1])  # the clip ends on a smile


def test_audio_only_clip_gets_the_image_only(tmp_path):
    clip = shared_data("emodb", "03a01Fa.wav")
    written = write_inspection(clip, extract_features(clip, CFG), tmp_path, CFG)
    assert written == [str(tmp_path / "03a01Fa.mfcc.png")]


def test_preprocess_paths_writes_inspection_files_on_request(home, tmp_path):
    clip = shared_data("faces", "single_face.mp4")
    line, _ = preprocess_paths([clip], cache_root=home.features, inspect_dir=tmp_path / "look")
    name = f"single_face-{Path(line['record']).stem[:8]}"  # the clip hash tells same-named clips apart
    assert line["inspection"] == [str(tmp_path / "look" / f"{name}.{kind}") for kind in ("mfcc.png", "overlay.mp4")]
    assert all(Path(path).stat().st_size > 0 for path in line["inspection"])

"""The original project's per-clip outputs, for people who inspect data by eye (written on request only).

- ``<name>.mfcc.png``: the clip's MFCC as an image (coefficients over time);
- ``<name>.overlay.mp4``: the sampled frames at 25 fps with the face landmarks, the active action
  units (``AUxx_c`` = 1) and the head rotation drawn on them.

Both come from a cached record plus one re-decode of the sampled frames (the record keeps only the
model's small frames), so no face backend runs again.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from affectflow.config import PreprocessConfig
from affectflow.faces.columns import AU_C_COLUMNS, AU_NAMES, COLUMN_INDEX
from affectflow.faces.model_inputs import landmark_points
from affectflow.features import ClipFeatures
from affectflow.media import read_sampled

OVERLAY_FPS = 25
MFCC_DPI = 150
_GREEN, _WHITE = (0, 255, 0), (255, 255, 255)


def write_mfcc_image(mfcc: np.ndarray, cfg: PreprocessConfig, path: Path, title: str) -> Path:
    """MFCC ``(steps, n_mfcc)`` as a heat map over time in seconds, each coefficient standardised over
    the clip (otherwise coefficient 0, the loudness, takes the whole colour range)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    seconds = mfcc.shape[0] * cfg.hop_length / cfg.sample_rate
    scaled = (mfcc - mfcc.mean(axis=0)) / (mfcc.std(axis=0) + 1e-6)
    figure, axes = plt.subplots(figsize=(6, 3))
    try:
        image = axes.imshow(scaled.T, origin="lower", aspect="auto", cmap="magma",
                            extent=(0, seconds, 0, mfcc.shape[1]))
        axes.set(xlabel="time (s)", ylabel="MFCC coefficient (standardised)", title=title)
        figure.colorbar(image, ax=axes)
        figure.tight_layout()
        figure.savefig(path, dpi=MFCC_DPI)
    finally:
        plt.close(figure)
    return path


def active_units(row: np.ndarray) -> list[str]:
    """The action units marked present in one table row."""
    return [name[:-2] for name in AU_C_COLUMNS if row[COLUMN_INDEX[name]] == 1.0]


def draw_face(frame: np.ndarray, row: np.ndarray, scale: float) -> np.ndarray:
    """A copy of ``frame`` with the row's landmarks, active AUs and head rotation (degrees) drawn on it."""
    canvas = frame.copy()
    if row[COLUMN_INDEX["success"]] != 1.0:
        cv2.putText(canvas, "no face", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _WHITE, 1, cv2.LINE_AA)
        return canvas
    for x, y in landmark_points(row) * scale:
        cv2.circle(canvas, (int(round(x)), int(round(y))), 1, _GREEN, -1, cv2.LINE_AA)
    pitch, yaw, roll = (math.degrees(row[COLUMN_INDEX[f"pose_R{axis}"]]) for axis in "xyz")
    lines = [f"pitch {pitch:+.0f} yaw {yaw:+.0f} roll {roll:+.0f}"]
    lines += [f"{au} {AU_NAMES[au]}" for au in active_units(row)]
    for i, text in enumerate(lines):
        cv2.putText(canvas, text, (6, 16 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _WHITE, 1, cv2.LINE_AA)
    return canvas


def write_overlay_video(clip: Path, record: ClipFeatures, cfg: PreprocessConfig, path: Path) -> Path:
    """The sampled frames with the face analysis drawn on, as an H.264 MP4 at ``OVERLAY_FPS``."""
    import imageio_ffmpeg

    video = read_sampled(clip, cfg.num_frames, max(cfg.face_width, cfg.frame_size))
    height, width = (side - side % 2 for side in video.frames.shape[1:3])  # yuv420p needs even sides
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=OVERLAY_FPS, codec="libx264",
                                         macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    try:
        for frame, row in zip(video.frames, record.face_table):
            writer.send(np.ascontiguousarray(draw_face(frame, row, video.scale)[:height, :width]))
    finally:
        writer.close()
    return path


def write_inspection(clip: Path, record: ClipFeatures, out_dir: str | Path, cfg: PreprocessConfig,
                     name: str | None = None) -> list[str]:
    """Write the MFCC image (clips with audio) and the overlay video (clips with video); their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or clip.stem
    written = []
    if record.audio_mask and record.mfcc.size:  # an eGeMAPS-only record has no MFCC frames
        written.append(write_mfcc_image(record.mfcc, cfg, out_dir / f"{name}.mfcc.png", clip.name))
    if record.video_mask:
        written.append(write_overlay_video(clip, record, cfg, out_dir / f"{name}.overlay.mp4"))
    return [str(path) for path in written]

"""Decoding media: probe a file, sample frames with decord, decode audio through an ffmpeg pipe.

librosa cannot read video containers, so audio is always decoded here and handed on as an array.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class MediaError(ValueError):
    """A file that cannot be used as a clip; the message names the file and the reason."""


@dataclass(frozen=True)
class MediaInfo:
    path: str
    has_video: bool
    has_audio: bool
    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")


def _video_reader(path: Path, width: int = -1, height: int = -1):
    from decord import DECORDError, VideoReader, cpu

    try:
        return VideoReader(str(path), ctx=cpu(0), width=width, height=height)
    except (DECORDError, RuntimeError) as err:
        raise MediaError(f"{path}: no decodable video stream ({str(err).splitlines()[0][:120]})") from err


def probe(path: str | Path) -> MediaInfo:
    """What a file holds. Raises ``MediaError`` when it holds neither decodable video nor audio."""
    path = Path(path)
    _check_file(path)
    try:
        reader = _video_reader(path)
    except MediaError:
        num_frames, fps, width, height = 0, 0.0, 0, 0
    else:
        num_frames, fps = len(reader), float(reader.get_avg_fps())
        try:
            height, width = reader[0].shape[:2] if num_frames else (0, 0)
        except Exception as err:  # decord raises bare DECORDError/RuntimeError on damaged streams
            raise MediaError(f"{path}: video stream is damaged ({str(err).splitlines()[0][:120]})") from err
        del reader
    audio = read_audio(path, sample_rate=8000)
    has_video, has_audio = num_frames > 0, audio.size > 0
    if not (has_video or has_audio):
        raise MediaError(f"{path}: not a decodable video or audio file")
    duration = num_frames / fps if has_video and fps > 0 else audio.size / 8000
    return MediaInfo(str(path), has_video, has_audio, num_frames, fps, int(width), int(height),
                     float(duration))


def sample_indices(total: int, count: int) -> np.ndarray:
    """``count`` frame indices spread uniformly over ``total`` frames (centres of equal segments).

    Short clips repeat frames rather than returning fewer, so every clip yields ``count`` frames.
    """
    if total <= 0:
        raise ValueError("a clip with no frames has nothing to sample")
    centres = (np.arange(count) + 0.5) * total / count
    return np.minimum(centres.astype(np.int64), total - 1)


def read_frames(path: str | Path, count: int, size: int) -> np.ndarray:
    """``count`` RGB frames, ``(count, size, size, 3)`` uint8, resized by the decoder.

    Only the sampled indices are decoded, so memory stays bounded on long videos.
    """
    path = Path(path)
    _check_file(path)
    reader = _video_reader(path, width=size, height=size)
    if len(reader) == 0:
        raise MediaError(f"{path}: video stream has no frames")
    try:
        frames = reader.get_batch(sample_indices(len(reader), count).tolist()).asnumpy()
    except Exception as err:  # decord raises bare DECORDError/RuntimeError on damaged streams
        raise MediaError(f"{path}: video frames could not be decoded ({err})") from err
    return np.ascontiguousarray(frames, dtype=np.uint8)


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 audio at ``sample_rate``; an empty array when the file has no audio stream.

    Uses the static ffmpeg shipped by imageio-ffmpeg (there is no system ffmpeg). ``-map 0:a:0?``
    maps nothing when the file has no audio stream; ffmpeg then refuses to open an output with no
    stream ("Output file does not contain any stream"), which means "no audio", not a broken file.
    """
    path = Path(path)
    _check_file(path)
    cmd = [_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0?", "-vn",
           "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    result = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        if "does not contain any stream" in stderr:
            return np.zeros(0, dtype=np.float32)
        reason = stderr.strip().splitlines()
        raise MediaError(f"{path}: audio could not be decoded ({reason[-1] if reason else 'ffmpeg failed'})")
    return np.frombuffer(result.stdout, dtype="<f4").copy()

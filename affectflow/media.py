"""Decoding media: probe a file, sample frames with decord, decode audio through an ffmpeg pipe.

librosa cannot read video containers, so audio is always decoded here and handed on as an array.

Long videos (``affectflow.timeline``) are read forward once, in windows, with memory bounded by a window
rather than by the file: ``stream_layout`` reads headers only, ``stream_sampled`` keeps only the sampled
frames still needed, ``AudioStream`` only the samples from the current window on.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectflow.errors import UserError


class MediaError(UserError, ValueError):
    """A file that cannot be used as a clip; the message names the file and the reason."""


class ClipTooLong(MediaError):
    """A clip over the configured maximum duration: the whole clip is rejected, not one modality."""


class DamagedVideo(MediaError):
    """A video stream that opens but whose sampled frames cannot be decoded (a truncated file, say):
    the whole clip is rejected rather than passed on as audio only."""


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


def _video_reader(path: Path):
    from decord import DECORDError, VideoReader, cpu

    try:
        return VideoReader(str(path), ctx=cpu(0))
    except (DECORDError, RuntimeError) as err:
        raise MediaError(f"{path}: no decodable video stream ({str(err).splitlines()[0][:120]})") from err


PROBE_MAX_SECONDS = 600.0   # ingest refuses longer files: no clip of an emotion corpus lasts 10 minutes


def probe(path: str | Path, max_seconds: float = PROBE_MAX_SECONDS) -> MediaInfo:
    """What a file holds. Raises ``MediaError`` when it holds neither decodable video nor audio, ``ClipTooLong``
    or ``UnsafeMedia`` (``checked_header``) before decoding a file past the limits."""
    path = Path(path)
    header = checked_header(path, max_seconds)
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
    audio = read_audio(path, sample_rate=8000, max_seconds=max_seconds + 1.0) if header.has_audio else np.zeros(0)
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


@dataclass(frozen=True)
class SampledVideo:
    """Uniformly sampled frames at a working size, with what maps them back to the source video."""

    frames: np.ndarray      # (count, h, w, 3) uint8 RGB, aspect kept, at most the requested width
    indices: np.ndarray     # the sampled frame indices (0-based) in the source
    fps: float
    source_width: int
    source_height: int

    @property
    def scale(self) -> float:
        """Working-frame pixels per source pixel."""
        return self.frames.shape[2] / self.source_width


DECODE_CHUNK = 4  # frames decoded at source size at once: bounds memory on high-resolution video


# The demuxers a clip may be read with: plain media containers, each one file. Playlists (HLS, DASH), concat
# lists, image sequences and the like make a decoder open further files or URLs named inside them: refused
# by ffmpeg itself (``-format_whitelist``) before it opens anything else, and only local files are readable
# (``-protocol_whitelist file``).
ACCEPTED_FORMATS = ("mov", "matroska", "avi", "flv", "mpeg", "mpegts", "asf", "wav", "mp3", "ogg", "flac", "aac")
MAX_PIXELS = 4096 * 2160     # DCI 4K; a 4000x4000 clip took +2 GB and 20 s before this limit
MAX_FPS = 240.0


class UnsafeMedia(MediaError):
    """A file that is not a plain media file of an accepted format, or one past the resolution limits:
    refused from its headers, before anything is decoded."""


def _listing(path: Path) -> list[str]:
    """What ffmpeg's demuxer says about a file (``ffmpeg -i``, headers only, nothing decoded), opened only as
    a local file of an accepted format."""
    result = subprocess.run([_ffmpeg(), "-nostdin", "-hide_banner", "-protocol_whitelist", "file",
                             "-format_whitelist", ",".join(ACCEPTED_FORMATS), "-i", str(path)],
                            capture_output=True, timeout=60, check=False)
    return result.stderr.decode(errors="replace").splitlines()


def _container_seconds(lines: list[str]) -> float | None:
    found = re.search(r"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", "\n".join(lines))
    if found is None:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class Header:
    """A file's headers as ffmpeg lists them: nothing decoded."""

    format: str
    duration_s: float | None       # the container's: the longest stream's; None when it does not say
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0


def read_header(path: str | Path) -> Header:
    """The headers of a plain media file. Raises ``UnsafeMedia`` for anything ffmpeg will not open as a local
    file of an ``ACCEPTED_FORMATS`` container (a playlist, a concat list, text, garbage)."""
    path = Path(path)
    _check_file(path)
    lines = _listing(path)
    opened = next((line for line in lines if line.startswith("Input #0, ")), None)
    if opened is None:
        raise UnsafeMedia(f"{path}: not a media file of an accepted format ({', '.join(ACCEPTED_FORMATS)}); "
                          "playlists, concat lists and other files naming further files are refused")
    video = next((line for line in lines if line.lstrip().startswith("Stream #") and "Video:" in line
                  and "attached pic" not in line), "")
    size = re.search(r"[ ,](\d{2,6})x(\d{2,6})[ ,\[]", video)
    fps = re.search(r"([\d.]+) fps", video) or re.search(r"([\d.]+) tbr", video)
    return Header(opened.removeprefix("Input #0, ").split(",")[0], _container_seconds(lines), bool(video),
                  _lists_stream(lines, "Audio"), int(size.group(1)) if size else 0,
                  int(size.group(2)) if size else 0, float(fps.group(1)) if fps else 0.0)


def checked_header(path: str | Path, max_seconds: float) -> Header:
    """``read_header``, refusing before any decoding a file longer than ``max_seconds`` in any stream
    (``ClipTooLong``: the container's duration is its longest stream's, so a short video with an hour of
    audio is refused too), over ``MAX_PIXELS`` per frame or ``MAX_FPS`` frames per second (``UnsafeMedia``)."""
    header = read_header(path)
    if header.duration_s is not None and header.duration_s > max_seconds + 0.5:
        raise ClipTooLong(f"{path}: lasts {header.duration_s:.1f} s (its longest stream), over the {max_seconds:g} s "
                          "limit; cut long recordings into utterances first")
    if header.width * header.height > MAX_PIXELS:
        raise UnsafeMedia(f"{path}: frames of {header.width}x{header.height} pixels, over the limit of "
                          f"{MAX_PIXELS / 1e6:.1f} megapixels (4096x2160); scale the video down first")
    if header.fps > MAX_FPS:
        raise UnsafeMedia(f"{path}: {header.fps:g} frames per second, over the limit of {MAX_FPS:g}")
    return header


def _lists_stream(lines: list[str], kind: str) -> bool:
    """Whether a listing has a ``kind`` ("Video" or "Audio") stream, cover art aside."""
    return any(line.lstrip().startswith("Stream #") and f"{kind}:" in line and "attached pic" not in line
               for line in lines)


def _declares_video(path: Path) -> bool:
    """Whether ffmpeg's demuxer lists a video stream (cover art aside): tells a damaged video stream
    from a file that simply has none, after decord failed to open it."""
    return _lists_stream(_listing(path), "Video")


def _working_size(width: int, height: int, target_width: int) -> tuple[int, int]:
    if width <= target_width:
        return width, height
    return target_width, max(1, int(round(height * target_width / width)))


def _shrink(source: tuple[int, int], size: tuple[int, int]) -> int:
    """Area averaging where it matters (shrinking 2x or more, else fine detail aliases); bilinear below
    that, where it looks the same and costs a fifth (0.14 vs 0.75 ms for 480 -> 320 px)."""
    import cv2

    return cv2.INTER_AREA if source[0] >= 2 * size[0] else cv2.INTER_LINEAR


def read_sampled(path: str | Path, count: int, width: int, max_seconds: float | None = None) -> SampledVideo:
    """``count`` uniformly sampled RGB frames, downscaled (aspect kept) to at most ``width`` pixels wide.

    Frames are decoded at source size a few at a time and resized with OpenCV: on these machines that
    is as fast as decord's in-decoder scaling, needs no second open to learn the source size, and one
    decode serves both the face backends and the model's small frames. Raises ``ClipTooLong`` before
    decoding anything when the video lasts more than ``max_seconds``; ``DamagedVideo`` when the file lists
    a video stream that cannot be decoded; plain ``MediaError`` when it has no video stream.
    """
    import cv2

    path = Path(path)
    _check_file(path)
    try:
        reader = _video_reader(path)
    except MediaError as err:
        if _declares_video(path):
            raise DamagedVideo(f"{path}: has a video stream that cannot be decoded, the file may be truncated or "
                               f"damaged ({str(err.__cause__).splitlines()[0][:120]})") from err
        raise
    total, fps = len(reader), float(reader.get_avg_fps())
    if total == 0:
        raise DamagedVideo(f"{path}: video stream has no frames")
    if max_seconds is not None and fps > 0 and total / fps > max_seconds:
        raise ClipTooLong(f"{path}: clip lasts {total / fps:.1f} s, over the {max_seconds:g} s limit "
                          "(max_clip_seconds); cut long recordings into utterances first")
    indices = sample_indices(total, count)
    try:
        decoded = [frame for start in range(0, count, DECODE_CHUNK)
                   for frame in reader.get_batch(indices[start:start + DECODE_CHUNK].tolist()).asnumpy()]
    except Exception as err:  # decord raises bare DECORDError/RuntimeError on damaged streams
        # decord also fails on valid videos narrower than 64 px; OpenCV reads those, not damaged ones.
        decoded = read_with_opencv(path, indices)
        if decoded is None:
            raise DamagedVideo(f"{path}: video frames could not be decoded, the file may be truncated or damaged "
                               f"({str(err).splitlines()[0][:120]})") from err
    source = (decoded[0].shape[1], decoded[0].shape[0])
    size = _working_size(*source, width)
    frames = [frame if size == source else cv2.resize(frame, size, interpolation=_shrink(source, size))
              for frame in decoded]
    return SampledVideo(np.ascontiguousarray(np.stack(frames), dtype=np.uint8), indices, fps, *source)


def read_with_opencv(path: Path, indices: np.ndarray) -> list[np.ndarray] | None:
    """RGB frames at ``indices`` (sorted) read sequentially with OpenCV; None unless every one was read."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    wanted, frames, position = list(indices), [], 0
    try:
        while wanted and capture.grab():
            while wanted and wanted[0] == position:  # an index may repeat when the clip is short
                ok, frame = capture.retrieve()
                if not ok:
                    return None
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                wanted.pop(0)
            position += 1
    finally:
        capture.release()
    return None if wanted else frames


def decode_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 audio decoded in-process by decord; an empty array when there is no audio stream.

    No subprocess: about 8 ms of CPU for a 2.5 s clip where ``read_audio`` takes about 22 ms. The whole
    stream is decoded at once, so use it only where the duration is already known to be bounded (a
    video that passed its length check); ``read_audio`` can stop early.
    """
    from decord import AudioReader, DECORDError, cpu

    path = Path(path)
    _check_file(path)
    try:
        reader = AudioReader(str(path), ctx=cpu(0), sample_rate=sample_rate, mono=True)
    except (DECORDError, RuntimeError) as err:
        if "Can't find audio stream" in str(err):
            return np.zeros(0, dtype=np.float32)
        raise MediaError(f"{path}: audio could not be decoded ({str(err).splitlines()[0][:120]})") from err
    return np.ascontiguousarray(reader[:].asnumpy()[0], dtype=np.float32)


def _audio_command(path: Path, sample_rate: int, max_seconds: float | None = None) -> list[str]:
    """ffmpeg writing the first audio stream as mono float32 at ``sample_rate`` to stdout."""
    limit = ["-t", f"{max_seconds:.3f}"] if max_seconds is not None else []
    return [_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0?", "-vn", *limit,
            "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]


def read_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 audio at ``sample_rate``; an empty array when the file has no audio stream.

    Uses the static ffmpeg shipped by imageio-ffmpeg (there is no system ffmpeg). ``-map 0:a:0?``
    maps nothing when the file has no audio stream; ffmpeg then refuses to open an output with no
    stream ("Output file does not contain any stream"), which means "no audio", not a broken file.
    ``max_seconds`` stops decoding there, so memory stays bounded on long files.
    """
    path = Path(path)
    _check_file(path)
    result = subprocess.run(_audio_command(path, sample_rate, max_seconds), capture_output=True, timeout=120,
                            check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        if "does not contain any stream" in stderr:
            return np.zeros(0, dtype=np.float32)
        reason = stderr.strip().splitlines()
        raise MediaError(f"{path}: audio could not be decoded ({reason[-1] if reason else 'ffmpeg failed'})")
    return np.frombuffer(result.stdout, dtype="<f4").copy()


# --- Long videos: headers first, then one forward pass in windows --------------------------------------

NO_AUDIO_STREAM = "does not contain any stream"  # ffmpeg's words when -map 0:a:0? mapped nothing


@dataclass(frozen=True)
class StreamLayout:
    """What a file holds, learnt without decoding it: enough to plan windows and refuse an over-long file."""

    path: str
    has_video: bool
    has_audio: bool
    num_frames: int     # as decord counts them (what ``read_sampled`` samples from); 0 without video
    fps: float
    duration_s: float   # num_frames / fps with video, else the container's duration


def stream_layout(path: str | Path) -> StreamLayout:
    """Streams, frame count, frame rate and duration from headers and decord's frame index; nothing is decoded
    (``probe`` decodes the whole audio track). Raises ``DamagedVideo`` for a listed video stream that does
    not open or has no frames, ``MediaError`` for a file with neither video nor audio or of unknown length."""
    path = Path(path)
    header = checked_header(path, math.inf)
    num_frames, fps = 0, 0.0
    try:
        reader = _video_reader(path)
    except MediaError as err:
        if header.has_video:
            raise DamagedVideo(f"{path}: has a video stream that cannot be decoded, the file may be truncated or "
                               f"damaged ({str(err.__cause__).splitlines()[0][:120]})") from err
    else:
        num_frames, fps = len(reader), float(reader.get_avg_fps())
        del reader
        if num_frames == 0 or fps <= 0:
            raise DamagedVideo(f"{path}: video stream has no frames")
    if not (num_frames or header.has_audio):
        raise MediaError(f"{path}: not a decodable video or audio file")
    duration = num_frames / fps if num_frames else header.duration_s
    if duration is None or duration <= 0:
        raise MediaError(f"{path}: the file does not say how long it is")
    return StreamLayout(str(path), num_frames > 0, header.has_audio, num_frames, fps, float(duration))


def stream_sampled(path: str | Path, index_sets: Sequence[np.ndarray], width: int,
                   fps: float) -> Iterator[SampledVideo]:
    """Per window, in order, its sampled frames (``index_sets``: each window's frame indices, sorted, with
    non-decreasing first indices, as ``read_sampled`` would pick them in a clip of that window), downscaled
    like ``read_sampled`` to at most ``width`` pixels wide.

    The video is read forward once with OpenCV: every frame is decoded (h264 needs its predecessors anyway)
    and only the sampled ones are converted and kept, until the last window needing them is done. Memory is
    bounded by the frames of the windows overlapping at once, whatever the video's length. OpenCV rather than
    decord: same pixels on h264 (same FFmpeg decoder and RGB conversion), half the CPU per frame, and decord's
    resident memory grows with every frame it decodes (about 250 MB over a 10-minute 640x360 video) where
    OpenCV's stays flat. A stream that ends up to a second early (counts differ between the two) repeats its
    last frame; one that breaks off earlier is a ``DamagedVideo``.
    """
    import cv2

    path = Path(path)
    wanted = np.unique(np.concatenate(list(index_sets))) if len(index_sets) else np.zeros(0, np.int64)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DamagedVideo(f"{path}: video stream could not be opened for reading")
    kept: dict[int, np.ndarray] = {}
    position, cursor = 0, 0  # the index grab() reads next; the next entry of ``wanted``
    last: np.ndarray | None = None
    source = size = None
    try:
        for number, indices in enumerate(index_sets):
            top = int(indices.max())
            while position <= top and capture.grab():
                if cursor < wanted.size and wanted[cursor] == position:
                    ok, frame = capture.retrieve()
                    if not ok:
                        raise DamagedVideo(f"{path}: frame {position} could not be decoded, the file may be damaged")
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                    if source is None:
                        source = (frame.shape[1], frame.shape[0])
                        size = _working_size(*source, width)
                    if size != source:
                        frame = cv2.resize(frame, size, interpolation=_shrink(source, size))
                    kept[position] = last = frame
                    cursor += 1
                position += 1
            if position <= top and (last is None or top - position >= max(fps, 1.0)):
                raise DamagedVideo(f"{path}: video breaks off at {position / fps:.1f} s, frame {position} of "
                                   f"{top + 1} or more; the file may be truncated or damaged")
            frames = np.stack([kept.get(int(i), last) for i in indices])
            yield SampledVideo(np.ascontiguousarray(frames, dtype=np.uint8), indices, fps, *source)
            following = int(index_sets[number + 1].min()) if number + 1 < len(index_sets) else top + 1
            for index in [i for i in kept if i < following]:
                del kept[index]
    finally:
        capture.release()


class AudioStream:
    """A file's audio (mono float32 at ``sample_rate``) read forward through one ffmpeg pipe.

    ``segment(start, stop)`` returns samples ``[start, stop)``; starts must not decrease. Only the samples from
    the last start on are held, so memory is bounded by a window, not by the file (one process for the whole
    file: a fresh ``ffmpeg -ss`` per window costs about 40 ms, this about 1.5 ms per second of audio). Past the
    end, segments are short or empty. An audio stream that fails to decode leaves ``error`` set and gives
    empty segments from there on, as ``read_audio``'s callers treat undecodable audio as missing.
    """

    READ_SAMPLES = 1 << 15  # at least this many samples per read

    def __init__(self, path: str | Path, sample_rate: int = 16000):
        self.path = Path(path)
        _check_file(self.path)
        self.sample_rate = sample_rate
        self.error: str | None = None
        self.peak_samples = 0  # the most samples held at once
        self._buffer = np.zeros(0, dtype=np.float32)
        self._start = 0  # sample index of _buffer[0]
        self._ended = False
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(_audio_command(self.path, sample_rate), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=self._stderr)

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, samples: int) -> np.ndarray:
        """Up to ``samples`` more samples (fewer only at the end of the stream)."""
        chunks, wanted = [], 4 * samples
        while wanted > 0 and not self._ended:
            chunk = self._process.stdout.read(wanted)
            if not chunk:
                self._finish()
            chunks.append(chunk)
            wanted -= len(chunk)
        data = b"".join(chunks)
        return np.frombuffer(data[: len(data) - len(data) % 4], dtype="<f4")

    def _finish(self) -> None:
        self._ended = True
        if self._process.wait() != 0:
            self._stderr.seek(0)
            stderr = self._stderr.read().decode(errors="replace")
            if NO_AUDIO_STREAM not in stderr:
                reason = stderr.strip().splitlines()
                self.error = f"{self.path}: audio could not be decoded ({reason[-1] if reason else 'ffmpeg failed'})"

    def segment(self, start: int, stop: int) -> np.ndarray:
        if start < self._start:
            raise ValueError(f"audio is read forward: sample {start} comes before {self._start}, already dropped")
        skip = start - self._start
        while skip > self._buffer.size and not self._ended:  # a gap between windows: read past it
            skip -= self._buffer.size
            self._start += self._buffer.size
            self._buffer = self._read(min(skip, 1 << 20))
        self._buffer = self._buffer[min(skip, self._buffer.size):]
        self._start = start
        missing = stop - start - self._buffer.size
        if missing > 0 and not self._ended:
            more = self._read(max(missing, self.READ_SAMPLES))
            self._buffer = np.concatenate([self._buffer, more])
        self.peak_samples = max(self.peak_samples, self._buffer.size)
        if self.error is not None:
            return np.zeros(0, dtype=np.float32)
        return self._buffer[: max(0, stop - start)].copy()

    def close(self) -> None:
        """Stop ffmpeg (it may have audio left past the last window) and free the pipe."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._process.stdout.close()
        self._stderr.close()

"""The built-in synthetic audio-visual emotion corpus: drawn faces that speak with a harmonic voice.

It lets the whole pipeline run on a fresh machine with no downloads, and it is not a toy for the
model: both modalities carry the class and the continuous affect, and each speaker has their own
face and voice, so a speaker-independent split measures generalisation.

- Video: the eyes open with arousal, the mouth curves with valence and opens with arousal, and the
  face takes an emotion-specific shape (anger: lowered V brows, bared teeth, flushed skin; fear:
  raised brows, wide eyes, pale skin; sadness: inner brows raised, outer lowered, gaze down;
  disgust: asymmetric brows, wrinkled nose, sneer; happiness: narrowed eyes, wide smile).
  The expression ramps up from neutral; head motion, scale, lighting, blinks and noise vary.
- Audio (16 kHz mono): harmonics under speaker-specific formants and pitch (100-240 Hz). Pitch
  level and range, loudness and syllable rate follow arousal; the pitch slope follows valence
  (rising when positive); each emotion adds a cue (fear: vibrato and tremor; disgust: breathiness;
  anger: a harsh, saturated spectrum; sadness: soft and slow). Background noise at a random SNR.

Labels: ``intensity ~ U(0.4, 1.0)`` and ``[arousal, valence] = intensity * CIRCUMPLEX[emotion]``
plus N(0, 0.05) noise, clipped to [-1, 1]. In this corpus intensity scales BOTH dimensions (unlike
``labels.affect_of``, which scales arousal only); neutral clips sit near the origin.

Bit-identical on every x86-64 CPU (same wheels and ffmpeg build), not only on the machine that wrote
the README: numpy picks SIMD loops for sin/exp/tanh/power at run time (AVX-512, AVX2 and baseline
loops differ in the last bit), OpenBLAS picks a dot kernel per CPU (``np.convolve`` sums in another
order), glibc's libm has FMA and non-FMA variants, OpenCV's resize has SIMD and scalar paths, x264
chooses CPU-specific intra analysis and ffmpeg's AAC encoder rounds differently with AVX2/FMA3, AVX
and SSE; any of them changed clips' bytes and so the dataset version. So rendering uses only
operations whose result IEEE 754 fixes (elementwise + - * /, sqrt, rint, ldexp/frexp, comparisons,
integer arithmetic, sequential cumulative sums): transcendental functions are the polynomial and
series below (``_sin_turns``, ``_exp2``, ``_log2``), harmonics come from the Chebyshev recurrence, RGB
becomes YUV 4:2:0 in integers here, and encoding runs with ``-cpuflags 0`` and x264's ``cpu-independent``.
``tests/unit/test_synth_portable.py`` checks it under emulated CPUs and pins a small batch's hashes.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
import wave
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from affectflow.errors import ConfigError
from affectflow.labels import CIRCUMPLEX, LABELS_FILENAME

SYNTH_EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "neutral")
SAMPLE_RATE = 16000
_LABEL_NOISE = 0.05
_ENCODERS = 2  # ffmpeg processes in flight while the next clip is drawn
_SUBPIXEL = 4  # cv2 drawing shift: coordinates carry 4 fractional bits, so motion is smooth


@dataclass(frozen=True)
class _Speaker:
    """What makes one speaker recognisable: face geometry and colours, voice pitch and timbre."""

    name: str
    face_aspect: float        # face half-width / half-height
    face_size: float          # face half-height as a fraction of the frame
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_line: float          # where the hair ends, in face-height units from the centre (-1 = top)
    backdrop: tuple[float, float, float]
    eye_gap: float
    brow_width: float
    mouth_width: float
    f0: float                 # base pitch in Hz
    formant_scale: float      # vocal tract length: higher voices get higher formants
    tilt: float               # spectral slope offset (breathy vs pressed voice)
    rate: float               # speaking-rate factor
    gain_db: float


@dataclass(frozen=True)
class _Face:
    """An emotion's facial action at full expression, in face-height units (y grows downwards)."""

    brow_inner: float         # negative raises the inner brow ends
    brow_outer: float
    brow_tilt: float          # right brow lowered / left raised (disgust's asymmetry)
    eyes: float               # added to the eye openness
    gaze: float               # iris moved down (sadness looks down)
    mouth_width: float        # factor on the speaker's mouth width
    mouth_open: float         # added to the arousal-driven opening
    lip_tilt: float           # one mouth corner raised (disgust's sneer)
    teeth: float              # fraction of the opening filled by teeth (anger bares them)
    wrinkle: float            # nose wrinkle strength
    flush: float              # skin reddening (anger) or, when negative, pallor (fear)


@dataclass(frozen=True)
class _Voice:
    """An emotion's vocal cue at full intensity (scaled by the clip's intensity)."""

    rate: float               # syllables per second added
    tilt: float               # spectral slope added (negative: brighter, harsher)
    drive: float              # tanh saturation (harshness)
    breath: float             # aspiration noise relative to the voice
    vibrato: float            # pitch vibrato depth in semitones
    tremor: float             # amplitude tremor depth
    gain_db: float
    formants: float           # formant shift factor (smiling raises formants)


_FACES: dict[str, _Face] = {
    "anger": _Face(0.16, -0.06, 0.0, -0.15, 0.0, 0.85, 0.0, 0.0, 1.0, 0.3, 0.5),
    "disgust": _Face(0.06, 0.02, 0.12, -0.35, 0.0, 0.9, -0.06, 0.12, 0.0, 1.0, 0.0),
    "fear": _Face(-0.16, -0.10, 0.0, 0.5, 0.0, 1.2, 0.08, 0.0, 0.0, 0.0, -0.5),
    "happiness": _Face(-0.03, -0.05, 0.0, -0.3, 0.0, 1.3, 0.0, 0.0, 0.4, 0.0, 0.1),
    "sadness": _Face(-0.14, 0.08, 0.0, -0.35, 0.05, 0.85, -0.08, 0.0, 0.0, 0.0, 0.0),
    "neutral": _Face(0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}

_VOICES: dict[str, _Voice] = {
    "anger": _Voice(0.3, -0.7, 5.0, 0.0, 0.0, 0.0, 3.0, 1.0),
    "disgust": _Voice(-0.8, 0.4, 0.0, 1.2, 0.0, 0.0, -1.0, 0.9),
    "fear": _Voice(0.8, 0.1, 0.0, 0.2, 1.2, 0.5, 0.0, 1.05),
    "happiness": _Voice(0.3, -0.3, 0.0, 0.0, 0.0, 0.0, 1.0, 1.12),
    "sadness": _Voice(-1.0, 0.7, 0.0, 0.15, 0.0, 0.0, -4.0, 0.93),
    "neutral": _Voice(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
}

# (F1, F2) of five vowels in Hz for an average adult voice; F3 is fixed at 2600 Hz.
_VOWELS = np.array([[730, 1090], [530, 1840], [300, 2240], [570, 840], [300, 870]], dtype=np.float32)
_HAIR = np.array([[30, 25, 20], [70, 45, 25], [150, 110, 60], [205, 180, 120], [125, 125, 125],
                  [115, 45, 20]], dtype=np.float32)
_SKIN_LIGHT = np.array([238, 204, 176], dtype=np.float32)
_SKIN_DARK = np.array([100, 66, 48], dtype=np.float32)


# Portable maths. Each function below is a fixed sequence of correctly rounded IEEE 754 operations
# (elementwise + - * /, rint, floor, frexp, ldexp, comparisons), so its bits are the same whichever
# SIMD loop numpy dispatches to, whatever libm the machine has and whether or not it has FMA; numpy
# evaluates one ufunc at a time, so no compiler can fuse a multiply and an add across them. Constants
# are decimal literals (Python parses them correctly rounded). Accuracy: a few ulp of float64.
_LN2 = 0.6931471805599453
_LOG2_E = 1.4426950408889634
_LOG2_10 = 3.321928094887362
_LOG2_2_4 = 1.2630344058337937
_TWO_OVER_LN2 = 2.8853900817779268
_SQRT_HALF = 0.7071067811865476
_TAU = 6.283185307179586
_DEGREES_PER_RADIAN = 57.29577951308232
_EXP_TAYLOR = tuple(1.0 / math.factorial(j) for j in range(14))                     # e**y, |y| <= ln(2) / 2
_SIN_TAYLOR = tuple((-1.0) ** j / math.factorial(2 * j + 1) for j in range(11))     # sin(z) / z, |z| <= pi / 2
_ATANH_SERIES = tuple(1.0 / (2 * j + 1) for j in range(12))                        # atanh(s) / s, |s| <= 0.172


def _horner(coefficients: tuple[float, ...], x):
    total = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        total = total * x + c
    return total


def _exp2(x) -> np.ndarray:
    """``2 ** x``: an integer power (exact, ``ldexp``) times a Taylor polynomial on [-1/2, 1/2]."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1100.0, 1000.0)
    whole = np.rint(x)
    return np.ldexp(_horner(_EXP_TAYLOR, (x - whole) * _LN2), whole.astype(np.int32))


def _log2(x) -> np.ndarray:
    """``log2(x)`` for ``x > 0``: the exponent (exact, ``frexp``) plus an atanh series on the mantissa."""
    mantissa, exponent = np.frexp(np.asarray(x, dtype=np.float64))
    low = mantissa < _SQRT_HALF
    mantissa = np.where(low, mantissa * 2.0, mantissa)  # now in [sqrt(1/2), sqrt(2))
    s = (mantissa - 1.0) / (mantissa + 1.0)
    return (exponent - low) + s * _horner(_ATANH_SERIES, s * s) * _TWO_OVER_LN2


def _pow(x, y: float) -> np.ndarray:
    """``x ** y`` for ``x >= 0`` (0 at 0)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, _exp2(y * _log2(np.where(x > 0, x, 1.0))), 0.0)


def _db_gain(db) -> np.ndarray:
    """``10 ** (db / 20)``."""
    return _exp2(np.asarray(db, dtype=np.float64) * (_LOG2_10 / 20))


def _sin_turns(x) -> np.ndarray:
    """``sin(2 pi x)``, ``x`` in turns: exact reduction to a quarter turn, then a Taylor polynomial."""
    x = np.asarray(x, dtype=np.float64)
    r = x - np.rint(x)                                                   # [-1/2, 1/2]
    r = np.where(r > 0.25, 0.5 - r, np.where(r < -0.25, -0.5 - r, r))  # [-1/4, 1/4], same sine
    z = r * _TAU
    return z * _horner(_SIN_TAYLOR, z * z)


def _cos_turns(x) -> np.ndarray:
    """``cos(2 pi x)``, ``x`` in turns."""
    return _sin_turns(np.asarray(x, dtype=np.float64) + 0.25)


def _tanh(x) -> np.ndarray:
    e = _exp2(np.clip(np.asarray(x, dtype=np.float64), -20.0, 20.0) * (2 * _LOG2_E))  # e ** 2x
    return (e - 1.0) / (e + 1.0)


def _resampler(hop: int, n: int) -> Callable[[np.ndarray], np.ndarray]:
    """Linear interpolation of a control signal (one value every ``hop`` samples, at least
    ``n // hop + 2`` of them) at ``n`` samples: what ``np.interp`` did, in plain elementwise steps."""
    index = np.arange(n) // hop
    fraction = (np.arange(n) % hop) / hop

    def at_samples(control: np.ndarray) -> np.ndarray:
        control = np.asarray(control, dtype=np.float64)
        return control[index] + np.diff(control)[index] * fraction
    return at_samples


def _moving_mean(x: np.ndarray, width: int) -> np.ndarray:
    """``np.convolve(x, ones(width) / width, "same")`` (zeros beyond the ends) from a sequential cumulative
    sum: ``np.convolve`` calls the BLAS dot kernel, whose summation order depends on the CPU."""
    before = width // 2
    padded = np.concatenate([np.zeros(before), np.asarray(x, dtype=np.float64), np.zeros(width - before)])
    total = np.concatenate([[0.0], np.cumsum(padded)])
    return (total[width:width + len(x)] - total[:len(x)]) / width


def _cubic_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Source rows ``(dst, 4)`` and weights ``(dst, 4)`` of OpenCV's bicubic resize along one axis
    (pixel centres aligned, Keys' kernel with a = -0.75, edge rows repeated)."""
    x = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    base = np.floor(x)
    t, a = x - base, -0.75
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    rows = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3), 0, src - 1)
    return rows, np.stack([w0, w1, w2, 1 - w0 - w1 - w2], -1)


def _resize_cubic(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (h, w, c) resized to (size, size, c) bicubically, as four weighted sums per axis."""
    rows, row_weights = _cubic_taps(image.shape[0], size)
    cols, col_weights = _cubic_taps(image.shape[1], size)
    tall = sum(row_weights[:, j, None, None] * image[rows[:, j]] for j in range(4))
    return sum(col_weights[None, :, j, None] * tall[:, cols[:, j]] for j in range(4))


def _yuv420p(frames: np.ndarray) -> np.ndarray:
    """RGB frames (t, h, w, 3) uint8 as planar YUV 4:2:0 (BT.601, limited range), in integers: chroma is
    each 2x2 block's mean colour. Done here so that ffmpeg's swscale (SIMD and C paths round differently)
    has nothing to convert."""
    count, height, width = frames.shape[:3]
    r, g, b = (frames[..., c].astype(np.uint16) for c in range(3))
    y = r * np.uint16(66)  # the sum reaches at most 220 * 255 + 128 = 56228: uint16 holds it
    y += g * np.uint16(129)
    y += b * np.uint16(25)
    y += 128
    y >>= 8
    y += 16
    if height % 2 or width % 2:
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    block = frames[:, 0::2, 0::2].astype(np.int32)
    for rows, cols in ((1, 0), (0, 1), (1, 1)):
        block += frames[:, rows::2, cols::2]
    r, g, b = block[..., 0], block[..., 1], block[..., 2]
    u = ((-38 * r - 74 * g + 112 * b + 512) >> 10) + 128
    v = ((112 * r - 94 * g - 18 * b + 512) >> 10) + 128
    return np.concatenate([plane.reshape(count, -1) for plane in (y, u, v)], axis=1).astype(np.uint8)


@dataclass(frozen=True)
class _Clip:
    """One planned clip: who, which emotion, its labels, and the seed that renders it."""

    index: int
    speaker: _Speaker
    emotion: str
    arousal: float
    valence: float
    intensity: float
    seed: int

    @property
    def relpath(self) -> str:
        return f"clips/{self.speaker.name}_{self.index:04d}_{self.emotion}.mp4"

    def rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, 3, self.index])


def _speakers(count: int, seed: int) -> list[_Speaker]:
    """Distinct faces and voices; pitches are spread over 100-240 Hz in a seed-dependent order."""
    rng = np.random.default_rng([seed, 1])
    pitch_rank = rng.permutation(count)
    speakers = []
    for k in range(count):
        pitch = (pitch_rank[k] + rng.uniform(0.2, 0.8)) / count
        skin = _SKIN_LIGHT + rng.uniform() * (_SKIN_DARK - _SKIN_LIGHT) + rng.normal(0, 8, 3)
        speakers.append(_Speaker(
            name=f"s{seed}-spk{k:02d}",  # the seed makes the person: other seeds, other people
            face_aspect=float(rng.uniform(0.68, 0.86)),
            face_size=float(rng.uniform(0.40, 0.46)),
            skin=tuple(np.clip(skin, 0, 255).tolist()),
            hair=tuple(_HAIR[rng.integers(len(_HAIR))].tolist()),
            hair_line=float(rng.uniform(-0.75, -0.45)),
            backdrop=tuple((rng.uniform(50, 200) + rng.normal(0, 18, 3)).tolist()),
            eye_gap=float(rng.uniform(0.34, 0.44)),
            brow_width=float(rng.uniform(0.09, 0.13)),
            mouth_width=float(rng.uniform(0.34, 0.46)),
            f0=float(100 * _exp2(pitch * _LOG2_2_4)),  # 100 * 2.4 ** pitch
            formant_scale=float(0.9 + 0.2 * pitch + rng.normal(0, 0.03)),
            tilt=float(rng.uniform(-0.1, 0.1)),
            rate=float(rng.uniform(0.85, 1.15)),
            gain_db=float(rng.uniform(-2, 2)),
        ))
    return speakers


def _plan(clips: int, speakers: int, seed: int) -> list[_Clip]:
    """Speaker ``i % speakers`` cycles through the emotions, so every speaker has every emotion."""
    if speakers < 1 or clips < speakers * len(SYNTH_EMOTIONS):
        raise ConfigError(f"need speakers >= 1 and clips >= {len(SYNTH_EMOTIONS)} x speakers so that every "
                          f"speaker has every emotion (got clips={clips}, speakers={speakers}): ask for at least "
                          f"{max(speakers, 1) * len(SYNTH_EMOTIONS)} clips or fewer speakers")
    people = _speakers(speakers, seed)
    plan = []
    for i in range(clips):
        k, j = i % speakers, i // speakers
        emotion = SYNTH_EMOTIONS[(j + k) % len(SYNTH_EMOTIONS)]
        rng = np.random.default_rng([seed, 2, i])
        intensity = rng.uniform(0.4, 1.0)
        affect = intensity * np.asarray(CIRCUMPLEX[emotion]) + rng.normal(0, _LABEL_NOISE, 2)
        arousal, valence = np.clip(affect, -1.0, 1.0)
        plan.append(_Clip(i, people[k], emotion, round(float(arousal), 4), round(float(valence), 4),
                          round(float(intensity), 4), seed))
    return plan


@dataclass(frozen=True)
class Shift:
    """A batch recorded otherwise: louder or quieter (dB), higher or lower voices (semitones), or a camera
    that sees no face. The labels and the random streams stay the same, so only what is shifted differs."""

    gain_db: float = 0.0
    pitch_semitones: float = 0.0
    faces: bool = True


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _backdrop(speaker: _Speaker, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured colour gradient (the room) and a lighting field (light from one side)."""
    base = np.asarray(speaker.backdrop, dtype=np.float32) + rng.normal(0, 12, 3).astype(np.float32)
    other = base + rng.normal(0, 25, 3).astype(np.float32)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    angle = rng.uniform(0, 1)  # in turns (1 = a full circle)
    field = float(_cos_turns(angle)) * ramp[None, :] + float(_sin_turns(angle)) * ramp[:, None]
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    room = base + field[..., None] * (other - base)
    texture = _resize_cubic(rng.normal(0, 8, (6, 6, 3)), size).astype(np.float32)
    light_angle = rng.uniform(0, 1)
    light = 1 + rng.uniform(0.1, 0.35) * (float(_cos_turns(light_angle)) * (ramp[None, :] - 0.5)
                                          + float(_sin_turns(light_angle)) * (ramp[:, None] - 0.5))
    return np.clip(room + texture, 0, 255).astype(np.uint8), light[..., None].astype(np.float32)


class _Pen:
    """Maps face coordinates (units of the face half-height, y down) to pixels, with head rotation."""

    def __init__(self, cx: float, cy: float, radius: float, angle: float):
        """``angle`` in radians."""
        self.cx, self.cy, self.r = cx, cy, radius
        turns = angle / _TAU
        self.cos, self.sin = float(_cos_turns(turns)), float(_sin_turns(turns))
        self.deg = angle * _DEGREES_PER_RADIAN

    def points(self, uv: np.ndarray) -> np.ndarray:
        u, v = uv[..., 0], uv[..., 1]
        x = self.cx + self.r * (u * self.cos - v * self.sin)
        y = self.cy + self.r * (u * self.sin + v * self.cos)
        return np.round(np.stack([x, y], -1) * (1 << _SUBPIXEL)).astype(np.int32)

    def width(self, w: float) -> int:
        return max(1, int(round(w * self.r)))

    def ellipse(self, img, centre, axes, colour) -> None:
        """A filled ellipse, turned with the head."""
        c = self.points(np.asarray(centre, dtype=np.float64))
        ax = tuple(int(round(a * self.r * (1 << _SUBPIXEL))) for a in axes)
        cv2.ellipse(img, (int(c[0]), int(c[1])), ax, self.deg, 0, 360, colour, -1, cv2.LINE_AA, _SUBPIXEL)

    def poly(self, img, uv, colour, thickness: float = 0.0) -> None:
        """A filled polygon, or an open line ``thickness`` face units wide."""
        pts = self.points(np.asarray(uv, dtype=np.float64))
        if thickness <= 0:
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, _SUBPIXEL)
        else:
            cv2.polylines(img, [pts], False, colour, self.width(thickness), cv2.LINE_AA, _SUBPIXEL)


def _draw_face(img: np.ndarray, pen: _Pen, sp: _Speaker, face: _Face, level: float, arousal: float,
               valence: float, blink: float) -> None:
    """One face at expression ``level`` in [0, 1], with the momentary arousal and valence."""
    aspect = sp.face_aspect
    flush = face.flush * level
    if flush >= 0:
        skin = tuple(c * f for c, f in zip(sp.skin, (1 + 0.15 * flush, 1 - 0.3 * flush, 1 - 0.3 * flush),
                                          strict=True))
    else:
        skin = tuple(c - 0.6 * flush * (215 - c) for c in sp.skin)
    pen.ellipse(img, (0.0, -0.1), (aspect * 1.08, 1.02), sp.hair)
    pen.ellipse(img, (0.0, 0.0), (aspect, 1.0), skin)
    turns = np.linspace(0.5, 1.0, 25)
    cap = np.stack([aspect * _cos_turns(turns), _sin_turns(turns)], -1)
    pen.poly(img, cap[cap[:, 1] <= sp.hair_line], sp.hair)

    openness = float(np.clip(0.55 + 0.3 * arousal + face.eyes * level, 0.08, 1.0)) * blink
    shade = tuple(0.35 * c for c in skin)
    brow = tuple(0.45 * c for c in sp.hair)
    for side in (-1.0, 1.0):
        ex, ey = side * sp.eye_gap * aspect, -0.22
        pen.ellipse(img, (ex, ey), (0.19, max(0.15 * openness, 0.012)), (240, 240, 240))
        if openness > 0.15:
            iris = min(0.075, 0.15 * openness)
            pen.ellipse(img, (ex, ey + face.gaze * level), (0.075, iris), (40, 28, 20))
        pen.poly(img, [(ex - 0.2, ey), (ex, ey - 0.16 * openness - 0.01), (ex + 0.2, ey)], shade, 0.03)
        tilt = side * face.brow_tilt * level
        inner = -0.46 - 0.1 * openness + face.brow_inner * level + tilt
        outer = -0.50 - 0.1 * openness + face.brow_outer * level + tilt
        pen.poly(img, [(side * 0.07, inner), (ex, (inner + outer) / 2 - 0.02),
                       (side * (sp.eye_gap * aspect + 0.21), outer)], brow, sp.brow_width)

    pen.poly(img, [(0.0, -0.12), (-0.07, 0.16), (0.07, 0.16)], shade, 0.025)
    wrinkle = face.wrinkle * level
    if wrinkle > 0.05:
        crease = tuple(c * (1 - 0.6 * wrinkle) for c in skin)
        for dy in (-0.12, -0.03, 0.06):
            pen.poly(img, [(-0.1, dy), (0.0, dy + 0.035), (0.1, dy)], crease, 0.03)

    half = sp.mouth_width * (1 + (face.mouth_width - 1) * level)
    opening = float(np.clip(0.03 + 0.25 * arousal + face.mouth_open * level, 0.0, 0.36))
    x = np.linspace(-half, half, 13)
    edge = 1 - (x / half) * (x / half)
    base = 0.52 - 0.2 * valence * (1 - edge) - face.lip_tilt * level * (x / half + 1)
    upper = np.stack([x, base - 0.35 * opening * edge], -1)
    lower = np.stack([x, base + 0.65 * opening * edge], -1)
    if opening > 0.02:
        pen.poly(img, np.concatenate([upper, lower[::-1]]), (60, 12, 20))
        teeth = face.teeth * min(1.0, 2 * level)
        if teeth > 0.05:
            bottom = np.stack([x, base - 0.35 * opening * edge + teeth * opening * edge], -1)
            pen.poly(img, np.concatenate([upper, bottom[::-1]]), (235, 232, 220))
    lip = (165, 65, 72)
    pen.poly(img, upper, lip, 0.04)
    pen.poly(img, lower, lip, 0.04)


def _video(clip: _Clip, rng: np.random.Generator, seconds: float, size: int, fps: int,
           faces: bool) -> np.ndarray:
    """``(frames, size, size, 3)`` uint8 RGB: the expression ramps from neutral to its peak (``faces=False``:
    the room alone, every random draw still made, so the audio stays the same)."""
    count = int(round(seconds * fps))
    t = np.arange(count) / fps
    onset = rng.uniform(0.0, 0.15) * seconds
    ramp = _smoothstep((t - onset) / (rng.uniform(0.15, 0.35) * seconds))
    room, light = _backdrop(clip.speaker, rng, size)
    centre = size / 2 + rng.uniform(-0.035, 0.035, 2) * size
    drift = rng.uniform(0.005, 0.02, 2) * size
    sway_hz, sway_phase = rng.uniform(0.3, 1.2, 2), rng.uniform(0, 1, 2)  # phases in turns
    radius = clip.speaker.face_size * size * rng.uniform(0.93, 1.06)
    gain = rng.uniform(0.75, 1.15)
    noise_sd = rng.uniform(3, 10)
    blinks = rng.uniform(0, seconds, rng.integers(0, 3))
    face = _FACES[clip.emotion]
    sway = drift * _sin_turns(sway_hz * t[:, None] + sway_phase)             # (count, 2) pixels
    nod = 0.06 * _sin_turns(sway_hz[0] * 0.7 * t + sway_phase[1])           # radians
    breathe = 1 + 0.04 * _sin_turns(0.5 * t)
    flicker = gain * (1 + 0.05 * _sin_turns(0.8 * t + sway_phase[0]))
    level = math.sqrt(clip.intensity) * ramp
    frames = np.empty((count, size, size, 3), dtype=np.uint8)
    for i, now in enumerate(t):
        img = room.copy()
        offset = sway[i] + rng.normal(0, 0.004 * size, 2)
        angle = float(nod[i]) + rng.normal(0, 0.01)
        pen = _Pen(float(centre[0] + offset[0]), float(centre[1] + offset[1]), float(radius * breathe[i]), angle)
        blink = 0.1 if np.any(np.abs(blinks - now) < 0.06) else 1.0
        if faces:
            _draw_face(img, pen, clip.speaker, face, float(level[i]), float(clip.arousal * ramp[i]),
                       float(clip.valence * ramp[i]), blink)
        img = img * (light * float(flicker[i])) + rng.standard_normal(img.shape, dtype=np.float32) * noise_sd
        frames[i] = np.clip(img, 0, 255)
    return frames


def _syllables(rate: float, seconds: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(onset, voiced duration) pairs at about ``rate`` syllables per second."""
    spans, now = [], rng.uniform(0.0, 0.15)
    while now < seconds:
        duration = rng.uniform(0.75, 1.25) / rate
        spans.append((now, duration * rng.uniform(0.55, 0.8)))
        now += duration
    return spans


def _audio(clip: _Clip, rng: np.random.Generator, seconds: float, gain_db: float,
           pitch_semitones: float) -> np.ndarray:
    """Mono float32 speech-like signal at ``SAMPLE_RATE`` carrying the clip's emotion and affect;
    ``gain_db`` and ``pitch_semitones`` shift every voice's level and pitch (0: none)."""
    sp, cue, k = clip.speaker, _VOICES[clip.emotion], clip.intensity
    arousal, valence = clip.arousal, clip.valence
    n, hop = int(round(seconds * SAMPLE_RATE)), 80
    tc = np.arange(n // hop + 2) * hop / SAMPLE_RATE  # control points, every 5 ms
    rate = float(np.clip((3.6 + 1.6 * arousal + cue.rate * k) * sp.rate * rng.uniform(0.9, 1.1), 1.5, 7.0))
    envelope, accent = np.zeros_like(tc), np.zeros_like(tc)
    formants = np.tile(_VOWELS.mean(0), (tc.size, 1))
    for start, voiced in _syllables(rate, seconds, rng):
        inside = (tc >= start) & (tc < start + voiced)
        shape = _sin_turns(0.5 * (tc[inside] - start) / voiced)  # half a sine over the syllable
        envelope[inside] = _pow(shape, 0.6) * _db_gain(rng.normal(0, 2))
        accent[inside] = shape * rng.uniform(0.3, 1.0)
        formants[inside] = _VOWELS[rng.integers(len(_VOWELS))]
    formants = formants * sp.formant_scale * (1 + (cue.formants - 1) * k)

    semitones = (3.5 * arousal + 4.0 * valence * (tc / seconds - 0.5)
                 + (0.8 + 2.5 * max(arousal, 0.0)) * accent
                 + cue.vibrato * k * _sin_turns(rng.uniform(6, 8) * tc)
                 + np.cumsum(rng.normal(0, 0.05, tc.size)))
    f0 = sp.f0 * _exp2((semitones + pitch_semitones) / 12)
    harmonics = np.arange(1, int(7600 / f0.min()) + 1, dtype=np.float64)[:, None]
    freq = harmonics * f0[None, :]
    tilt = 1.3 - 0.45 * arousal + cue.tilt * k + sp.tilt
    resonance = 0.0
    for centre, width in ((formants[:, 0], 90), (formants[:, 1], 140), (2600 * sp.formant_scale, 200)):
        z = (freq - centre) / width
        resonance = resonance + _exp2(z * z * (-0.5 * _LOG2_E))  # exp(-z^2 / 2)
    weights = _exp2(-tilt * _log2(harmonics)) * (0.12 + resonance) * (freq < 7600)  # h ** -tilt * ...

    # Harmonic h is sin(h * phase): from the fundamental's sine and cosine by the Chebyshev recurrence
    # sin((h + 1) p) = 2 cos(p) sin(h p) - sin((h - 1) p), so no per-harmonic sine is evaluated.
    at_samples = _resampler(hop, n)
    turns = np.cumsum(at_samples(f0)) / SAMPLE_RATE  # the fundamental's phase in cycles
    turns -= np.floor(turns)
    current, below, twice_cos = _sin_turns(turns), np.zeros(n), 2 * _cos_turns(turns)
    voice = np.zeros(n)
    for row in weights:
        voice += at_samples(row) * current
        current, below = twice_cos * current - below, current
    voice /= np.sqrt(np.mean(voice * voice)) + 1e-9
    if cue.drive > 0:
        drive = 1 + cue.drive * k
        voice = _tanh(drive * voice) / _tanh(drive)
    breath = np.diff(rng.standard_normal(n + 1)) / math.sqrt(2)
    voice = voice + (cue.breath * k + 0.05) * breath
    t = np.arange(n) / SAMPLE_RATE
    tremor = 1 - cue.tremor * k * 0.5 * (1 + _sin_turns(rng.uniform(4, 6) * t))
    voice = voice * at_samples(envelope) * tremor

    level_db = -22 + 6 * arousal + cue.gain_db * k + sp.gain_db + rng.normal(0, 1.5) + gain_db
    voice *= _db_gain(level_db) / (np.sqrt(np.mean(voice * voice)) + 1e-9)
    walk = np.cumsum(rng.standard_normal(n))
    rumble = walk - _moving_mean(walk, 400)  # brown noise without its drift
    background = rng.uniform(0, 1) * rumble / (rumble.std() + 1e-9) + rng.standard_normal(n)
    snr_db = rng.uniform(5, 25)
    background *= np.sqrt(np.mean(voice * voice)) / _db_gain(snr_db) / (background.std() + 1e-9)
    return np.clip(voice + background, -0.99, 0.99).astype(np.float32)


def _write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((audio * 32767).astype("<i2").tobytes())


def _encode(frames: np.ndarray, audio: np.ndarray, fps: int, target: Path) -> None:
    """h264/AAC mp4 through imageio-ffmpeg's static binary; bit-exact so a seed gives identical bytes.

    CPU-independent: ffmpeg gets YUV 4:2:0 (converted here, so swscale has nothing to do), runs its own
    code without SIMD (``-cpuflags 0``: the AAC encoder's AVX2/FMA3, AVX and SSE paths round differently)
    and x264 runs ``cpu-independent`` (else CPUs with SSSE3 pick intra modes with other functions than
    SSE2-only ones). x264's assembly is bit-exact with its C otherwise, so it stays on.
    Written under a temporary name and renamed, so a watcher never sees a half-written clip.
    """
    import imageio_ffmpeg

    partial = target.with_name(target.name + ".part")
    with tempfile.TemporaryDirectory(prefix="affectflow-synth-") as scratch:
        wav = Path(scratch) / "voice.wav"
        _write_wav(wav, audio)
        height, width = frames.shape[1:3]
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", "-cpuflags", "0",
               "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
               "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "1",
               "-x264-params", "cpu-independent=1", "-c:a", "aac", "-b:a", "64k", "-shortest", "-map_metadata", "-1",
               "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
               "-f", "mp4", str(partial)]
        result = subprocess.run(cmd, input=_yuv420p(frames).tobytes(), capture_output=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg could not write {target}: {result.stderr.decode(errors='replace')[-400:]}")
    os.replace(partial, target)


def _render(clip: _Clip, seconds: float, size: int, fps: int, shift: Shift) -> tuple[np.ndarray, np.ndarray]:
    """Frames and audio of one clip, from the clip's own random stream."""
    rng = clip.rng()
    frames = _video(clip, rng, seconds, size, fps, shift.faces)
    return frames, _audio(clip, rng, seconds, shift.gain_db, shift.pitch_semitones)


def write_synthetic_batch(out_dir: Path, clips: int = 240, speakers: int = 8, seed: int = 0, *,
                          seconds: float = 2.0, size: int = 128, fps: int = 25, dataset: str = "synthetic",
                          shift: Shift = Shift(),
                          progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Write ``out_dir/clips/*.mp4`` and ``out_dir/labels.csv``; return the label table.

    Deterministic for a seed: the same labels and, with the same ffmpeg build, the same bytes. Balanced: speaker ``k`` gets clips
    ``k, k + speakers, ...`` cycling through ``SYNTH_EMOTIONS``, so ``clips`` must be at least
    ``6 * speakers``. ``labels.csv`` is written last: its presence marks a complete batch. ``shift``: the same
    people and labels recorded otherwise (what drift detection must notice); the default changes nothing.

    Drawing runs here while ffmpeg encodes the previous clips in its own processes (waited on by
    threads), which uses two cores without a process pool: a spawned pool would re-import the
    caller's ``__main__`` and a forked one is unsafe beside TensorFlow's or Prefect's threads.
    """
    out_dir = Path(out_dir)
    plan = _plan(clips, speakers, seed)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    pending: deque[Future[None]] = deque()
    done = 0

    def finish_oldest() -> None:
        nonlocal done
        pending.popleft().result()
        done += 1
        if progress:
            progress(done, len(plan))

    with ThreadPoolExecutor(_ENCODERS) as encoders:
        for clip in plan:
            frames, audio = _render(clip, seconds, size, fps, shift)
            pending.append(encoders.submit(_encode, frames, audio, fps, out_dir / clip.relpath))
            if len(pending) > _ENCODERS:
                finish_oldest()
        while pending:
            finish_oldest()
    labels = pd.DataFrame({
        "path": [c.relpath for c in plan],
        "dataset": dataset,
        "speaker": [c.speaker.name for c in plan],
        "emotion": [c.emotion for c in plan],
        "arousal": [c.arousal for c in plan],
        "valence": [c.valence for c in plan],
        "intensity": [c.intensity for c in plan],
    })
    labels.to_csv(out_dir / LABELS_FILENAME, index=False)
    return labels

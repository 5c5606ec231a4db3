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
"""

from __future__ import annotations

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
            f0=float(100 * 2.4 ** pitch),
            formant_scale=float(0.9 + 0.2 * pitch + rng.normal(0, 0.03)),
            tilt=float(rng.uniform(-0.1, 0.1)),
            rate=float(rng.uniform(0.85, 1.15)),
            gain_db=float(rng.uniform(-2, 2)),
        ))
    return speakers


def _plan(clips: int, speakers: int, seed: int) -> list[_Clip]:
    """Speaker ``i % speakers`` cycles through the emotions, so every speaker has every emotion."""
    if speakers < 1 or clips < speakers * len(SYNTH_EMOTIONS):
        raise ValueError(f"need speakers >= 1 and clips >= {len(SYNTH_EMOTIONS)} x speakers so that every "
                         f"speaker has every emotion (got clips={clips}, speakers={speakers})")
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


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _backdrop(speaker: _Speaker, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured colour gradient (the room) and a lighting field (light from one side)."""
    base = np.asarray(speaker.backdrop, dtype=np.float32) + rng.normal(0, 12, 3).astype(np.float32)
    other = base + rng.normal(0, 25, 3).astype(np.float32)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    field = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    room = base + field[..., None] * (other - base)
    texture = cv2.resize(rng.normal(0, 8, (6, 6, 3)).astype(np.float32), (size, size),
                         interpolation=cv2.INTER_CUBIC)
    light_angle = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0.1, 0.35) * (np.cos(light_angle) * (ramp[None, :] - 0.5)
                                          + np.sin(light_angle) * (ramp[:, None] - 0.5))
    return np.clip(room + texture, 0, 255).astype(np.uint8), light[..., None].astype(np.float32)


class _Pen:
    """Maps face coordinates (units of the face half-height, y down) to pixels, with head rotation."""

    def __init__(self, cx: float, cy: float, radius: float, angle: float):
        self.cx, self.cy, self.r = cx, cy, radius
        self.cos, self.sin, self.deg = np.cos(angle), np.sin(angle), float(np.degrees(angle))

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
    theta = np.linspace(np.pi, 2 * np.pi, 25)
    cap = np.stack([aspect * np.cos(theta), np.sin(theta)], -1)
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
    edge = 1 - (x / half) ** 2
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


def _video(clip: _Clip, rng: np.random.Generator, seconds: float, size: int, fps: int) -> np.ndarray:
    """``(frames, size, size, 3)`` uint8 RGB: the expression ramps from neutral to its peak."""
    count = int(round(seconds * fps))
    t = np.arange(count) / fps
    onset = rng.uniform(0.0, 0.15) * seconds
    ramp = _smoothstep((t - onset) / (rng.uniform(0.15, 0.35) * seconds))
    room, light = _backdrop(clip.speaker, rng, size)
    centre = size / 2 + rng.uniform(-0.035, 0.035, 2) * size
    drift = rng.uniform(0.005, 0.02, 2) * size
    sway_hz, sway_phase = rng.uniform(0.3, 1.2, 2), rng.uniform(0, 2 * np.pi, 2)
    radius = clip.speaker.face_size * size * rng.uniform(0.93, 1.06)
    gain = rng.uniform(0.75, 1.15)
    noise_sd = rng.uniform(3, 10)
    blinks = rng.uniform(0, seconds, rng.integers(0, 3))
    face = _FACES[clip.emotion]
    frames = np.empty((count, size, size, 3), dtype=np.uint8)
    for i, now in enumerate(t):
        img = room.copy()
        offset = drift * np.sin(2 * np.pi * sway_hz * now + sway_phase) + rng.normal(0, 0.004 * size, 2)
        angle = 0.06 * np.sin(2 * np.pi * sway_hz[0] * 0.7 * now + sway_phase[1]) + rng.normal(0, 0.01)
        pen = _Pen(centre[0] + offset[0], centre[1] + offset[1],
                   radius * (1 + 0.04 * np.sin(2 * np.pi * 0.5 * now)), angle)
        blink = 0.1 if np.any(np.abs(blinks - now) < 0.06) else 1.0
        _draw_face(img, pen, clip.speaker, face, float(clip.intensity ** 0.5 * ramp[i]),
                   clip.arousal * ramp[i], clip.valence * ramp[i], blink)
        flicker = gain * (1 + 0.05 * np.sin(2 * np.pi * 0.8 * now + sway_phase[0]))
        img = img * (light * flicker) + rng.standard_normal(img.shape, dtype=np.float32) * noise_sd
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


def _audio(clip: _Clip, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Mono float32 speech-like signal at ``SAMPLE_RATE`` carrying the clip's emotion and affect."""
    sp, cue, k = clip.speaker, _VOICES[clip.emotion], clip.intensity
    arousal, valence = clip.arousal, clip.valence
    n, hop = int(round(seconds * SAMPLE_RATE)), 80
    tc = np.arange(n // hop + 2, dtype=np.float32) * hop / SAMPLE_RATE
    rate = float(np.clip((3.6 + 1.6 * arousal + cue.rate * k) * sp.rate * rng.uniform(0.9, 1.1), 1.5, 7.0))
    envelope, accent = np.zeros_like(tc), np.zeros_like(tc)
    formants = np.tile(_VOWELS.mean(0), (tc.size, 1))
    for start, voiced in _syllables(rate, seconds, rng):
        inside = (tc >= start) & (tc < start + voiced)
        shape = np.sin(np.pi * (tc[inside] - start) / voiced)
        envelope[inside] = shape ** 0.6 * 10 ** (rng.normal(0, 2) / 20)
        accent[inside] = shape * rng.uniform(0.3, 1.0)
        formants[inside] = _VOWELS[rng.integers(len(_VOWELS))]
    formants = formants * sp.formant_scale * (1 + (cue.formants - 1) * k)

    semitones = (3.5 * arousal + 4.0 * valence * (tc / seconds - 0.5)
                 + (0.8 + 2.5 * max(arousal, 0.0)) * accent
                 + cue.vibrato * k * np.sin(2 * np.pi * rng.uniform(6, 8) * tc)
                 + np.cumsum(rng.normal(0, 0.05, tc.size)))
    f0 = sp.f0 * 2 ** (semitones / 12)
    harmonics = np.arange(1, int(7600 / f0.min()) + 1, dtype=np.float32)[:, None]
    freq = harmonics * f0[None, :]
    tilt = 1.3 - 0.45 * arousal + cue.tilt * k + sp.tilt
    resonance = sum(np.exp(-0.5 * ((freq - centre) / width) ** 2)
                    for centre, width in ((formants[:, 0], 90), (formants[:, 1], 140),
                                          (2600 * sp.formant_scale, 200)))
    weights = harmonics ** -tilt * (0.12 + resonance) * (freq < 7600)

    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(np.interp(t, tc, f0)) / SAMPLE_RATE
    voice = np.zeros(n, dtype=np.float32)
    for h, row in zip(harmonics[:, 0], weights, strict=True):
        voice += np.interp(t, tc, row).astype(np.float32) * np.sin(h * phase).astype(np.float32)
    voice /= np.sqrt(np.mean(voice ** 2)) + 1e-9
    if cue.drive > 0:
        drive = 1 + cue.drive * k
        voice = np.tanh(drive * voice) / np.tanh(drive)
    breath = np.diff(rng.standard_normal(n + 1)).astype(np.float32) / np.sqrt(2)
    voice = voice + (cue.breath * k + 0.05) * breath
    tremor = 1 - cue.tremor * k * 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(4, 6) * t))
    voice = voice * np.interp(t, tc, envelope).astype(np.float32) * tremor

    level_db = -22 + 6 * arousal + cue.gain_db * k + sp.gain_db + rng.normal(0, 1.5)
    voice *= 10 ** (level_db / 20) / (np.sqrt(np.mean(voice ** 2)) + 1e-9)
    rumble = np.cumsum(rng.standard_normal(n)).astype(np.float32)  # brown noise without its drift
    rumble -= np.convolve(rumble, np.ones(400, dtype=np.float32) / 400, mode="same")
    background = rng.uniform(0, 1) * rumble / (rumble.std() + 1e-9) + rng.standard_normal(n).astype(np.float32)
    snr_db = rng.uniform(5, 25)
    background *= np.sqrt(np.mean(voice ** 2)) / 10 ** (snr_db / 20) / (background.std() + 1e-9)
    return np.clip(voice + background, -0.99, 0.99).astype(np.float32)


def _write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((audio * 32767).astype("<i2").tobytes())


def _encode(frames: np.ndarray, audio: np.ndarray, fps: int, target: Path) -> None:
    """h264/AAC mp4 through imageio-ffmpeg's static binary; bit-exact so a seed gives identical bytes.

    Written under a temporary name and renamed, so a watcher never sees a half-written clip.
    """
    import imageio_ffmpeg

    partial = target.with_name(target.name + ".part")
    with tempfile.TemporaryDirectory(prefix="affectflow-synth-") as scratch:
        wav = Path(scratch) / "voice.wav"
        _write_wav(wav, audio)
        height, width = frames.shape[1:3]
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
               "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "1",
               "-c:a", "aac", "-b:a", "64k", "-shortest", "-map_metadata", "-1",
               "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
               "-f", "mp4", str(partial)]
        result = subprocess.run(cmd, input=frames.tobytes(), capture_output=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg could not write {target}: {result.stderr.decode(errors='replace')[-400:]}")
    os.replace(partial, target)


def _render(clip: _Clip, seconds: float, size: int, fps: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames and audio of one clip, from the clip's own random stream."""
    rng = clip.rng()
    frames = _video(clip, rng, seconds, size, fps)
    return frames, _audio(clip, rng, seconds)


def write_synthetic_batch(out_dir: Path, clips: int = 240, speakers: int = 8, seed: int = 0, *,
                          seconds: float = 2.0, size: int = 128, fps: int = 25, dataset: str = "synthetic",
                          progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Write ``out_dir/clips/*.mp4`` and ``out_dir/labels.csv``; return the label table.

    Deterministic for a seed: the same labels and, with the same ffmpeg build, the same bytes. Balanced: speaker ``k`` gets clips
    ``k, k + speakers, ...`` cycling through ``SYNTH_EMOTIONS``, so ``clips`` must be at least
    ``6 * speakers``. ``labels.csv`` is written last: its presence marks a complete batch.

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
            frames, audio = _render(clip, seconds, size, fps)
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

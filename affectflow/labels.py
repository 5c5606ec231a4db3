"""The label contract: canonical emotions, the arousal/valence table and the label CSV columns.

One order everywhere: ``[arousal, valence]``.
"""

from __future__ import annotations

AFFECT_DIMENSIONS: tuple[str, str] = ("arousal", "valence")

# Canonical vocabulary shared by every corpus adapter (each maps its own codes onto these names).
EMOTIONS: tuple[str, ...] = (
    "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral",
    "contempt", "anxiety", "helplessness", "disappointment", "boredom", "calm",
)

# (arousal, valence) per emotion, in [-1, 1], for corpora without continuous labels.
# The six basic emotions use the original project's table (its eNTERFACE notebook, which had the
# order right); the others are placed on Russell's circumplex (Russell 1980, "A circumplex model of
# affect"; Scherer 2005, "What are emotions?" figure 2) at the same scale. Neutral is the origin.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "anger": (0.8, -0.6),
    "disgust": (0.6, -0.6),
    "fear": (0.9, -0.6),
    "happiness": (0.7, 0.8),
    "sadness": (-0.4, -0.7),
    "surprise": (0.9, 0.4),
    "neutral": (0.0, 0.0),
    "contempt": (0.3, -0.5),
    "anxiety": (0.6, -0.5),
    "helplessness": (-0.3, -0.6),
    "disappointment": (-0.2, -0.6),
    "boredom": (-0.6, -0.3),
    "calm": (-0.6, 0.4),
}

# Label CSV contract (one row per clip). ``path`` is relative to the batch folder.
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "dataset", "speaker", "emotion")
OPTIONAL_COLUMNS: tuple[str, ...] = ("arousal", "valence", "intensity", "split")
LABELS_FILENAME = "labels.csv"


def affect_of(emotion: str, intensity: float = 1.0) -> tuple[float, float]:
    """``(arousal, valence)`` from the table; intensity scales arousal (clipped to [-1, 1]).

    Unknown emotions raise ``KeyError`` instead of silently becoming (0, 0).
    """
    arousal, valence = CIRCUMPLEX[emotion]
    return max(-1.0, min(1.0, arousal * intensity)), valence

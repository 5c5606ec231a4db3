"""Modality ablation views and masks (no model needed)."""


import numpy as np

from affectflow.ablation import ablation_views
from affectflow.arrays import Arrays

CLASSES = ("anger", "happiness", "sadness")


def test_views_cover_each_modality_alone_and_left_out():
    assert ablation_views(["audio"]) == {"all": ("audio",)}
    assert ablation_views(["video", "audio"]) == {"all": ("video", "audio"), "video only": ("video",),
                                                  "audio only": ("audio",)}
    three = ablation_views(["video", "audio", "face"])
    assert three["without face"] == ("video", "audio") and len(three) == 7


def test_masking_hides_face_frames_too():
    rng = np.random.default_rng(0)
    base = Arrays({"face": rng.normal(size=(2, 4, 6)).astype("float32"), "face_mask": np.ones((2, 4), "float32")},
                  np.array([0, 1]), np.zeros((2, 2), "float32"))
    hidden = base.masked("face")
    assert hidden.inputs["face_mask"].shape == (2, 4) and not hidden.inputs["face_mask"].any()
    assert base.inputs["face_mask"].all()  # the original is untouched

"""A fit lowers the loss, and the saved model predicts what the trained one did."""


import keras
import numpy as np
from support import model_inputs as inputs
from support import small_model

from affectflow.config import TrainConfig
from affectflow.model import (
    AFFECT_OUTPUT,
    EMOTION_OUTPUT,
    compile_model,
)


def test_fit_reduces_loss_and_saved_model_predicts_the_same(tmp_path):
    keras.utils.set_random_seed(0)
    model = compile_model(small_model(), TrainConfig())
    x = inputs(16)
    y = {EMOTION_OUTPUT: np.arange(16) % 3, AFFECT_OUTPUT: np.random.default_rng(1).uniform(-1, 1, (16, 2))}
    # Per-epoch losses carry the noise of dropout and modality dropout on 16 clips (8 epochs once ended higher
    # than they began): compare the first two epochs with the last three of twenty (margin >= 0.3 over 6 seeds).
    loss = model.fit(x, y, epochs=20, batch_size=8, verbose=0).history["loss"]
    assert np.mean(loss[-3:]) < np.mean(loss[:2])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    for name in (EMOTION_OUTPUT, AFFECT_OUTPUT):
        np.testing.assert_allclose(np.asarray(model(x)[name]), np.asarray(loaded(x)[name]), atol=1e-5)

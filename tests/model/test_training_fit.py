"""Training runs: no encoder for a modality the corpus lacks, refit on train + val for the best epoch count."""

from dataclasses import replace

from support import audio_only

from affectflow.config import TrainConfig
from affectflow.model import input_names
from affectflow.training import prepare, train

CLASSES = ("anger", "happiness", "sadness")

CONFIG = replace(TrainConfig(), epochs=3, hidden_units=8, batch_size=8, audio_encoder="stats", speaker_norm=False)


def test_a_modality_no_training_clip_carries_gets_no_encoder():
    ready, (other,) = prepare(audio_only(12, 0), [audio_only(6, 1)], CONFIG)
    assert "frames" not in ready.inputs and "video_mask" not in ready.inputs and "frames" not in other.inputs
    model = train(audio_only(24, 0), audio_only(9, 1), CLASSES, CONFIG, progress=lambda _: None).model
    assert set(input_names(model)) == {"mfcc", "audio_mask"}


def test_refit_trains_on_train_and_val_for_the_best_epoch_count():
    messages = []
    result = train(audio_only(24, 0), audio_only(9, 1), CLASSES, replace(CONFIG, refit=True),
                   progress=messages.append)
    assert result.refit and 1 <= result.best_epoch <= CONFIG.epochs
    assert f"refitting on train + validation for {result.best_epoch} epochs" in messages
    assert len(result.history["loss"]) >= result.best_epoch  # the curves of the selection run

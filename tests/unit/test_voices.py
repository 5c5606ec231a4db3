"""Speaker calibration's running statistics: the same numbers as statistics over all the clips at once,
shared by processes through one file, bounded, forgettable, and refusing ids that are not names."""

import multiprocessing

import numpy as np
import pytest

from affectflow.arrays import Arrays, concatenate
from affectflow.speakers import align_speakers, align_with, audio_statistics, shrunk
from affectflow.voices import VoiceBook, VoiceError, calibrated, statistics

STEPS = 30


def clips(n: int, seed: int = 0, offset: float = 0.0) -> Arrays:
    """``n`` audio clips of one voice: MFCC and log-mel with sound in the first 20 frames, silence after."""
    rng = np.random.default_rng(seed)
    mfcc = rng.normal(offset, 2.0, (n, STEPS, 40)).astype("float32")
    logmel = rng.normal(offset, 3.0, (n, STEPS, 64)).astype("float32")
    mfcc[:, 20:], logmel[:, 20:] = 0.0, -80.0
    inputs = {"mfcc": mfcc, "logmel": logmel, "audio_mask": np.ones((n, 1), "float32")}
    return Arrays(inputs, np.zeros(n, int), np.zeros((n, 2), "float32"), np.array(["v"] * n))


def test_running_statistics_equal_those_of_all_the_clips_at_once(tmp_path):
    book, voice = VoiceBook(tmp_path / "voices.sqlite"), clips(7, offset=1.5)
    for i in range(7):
        running, heard = book.hear("alice", voice.subset(np.array([i])))
    assert heard == 7 == book.clips("alice")
    for name, (mean, std) in audio_statistics(voice).items():
        np.testing.assert_allclose(running[name][0], mean, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(running[name][1], std, rtol=1e-5, atol=1e-6)


def test_a_clip_aligned_with_its_voice_so_far_matches_training_alignment(tmp_path):
    voice, population = clips(5, offset=3.0), audio_statistics(clips(40, seed=1))
    book = VoiceBook(tmp_path / "voices.sqlite")
    for i in range(5):
        own, _ = book.hear("bob", voice.subset(np.array([i])))
    last = voice.subset(np.array([4]))
    np.testing.assert_allclose(align_with(last, own, population).inputs["mfcc"],
                               align_speakers(voice, population).subset(np.array([4])).inputs["mfcc"], atol=1e-4)
    assert statistics({}) == {}


def test_shrinking_towards_the_population_is_hearing_its_average_clips_beside_the_voice():
    voice, average = clips(4, offset=3.0), clips(3, seed=1)  # the same frames with sound in every clip
    own, population = audio_statistics(voice), audio_statistics(average)
    both = audio_statistics(concatenate([voice, average]))
    for name in ("mfcc", "logmel"):
        for part in (0, 1):  # mean, std
            np.testing.assert_allclose(shrunk(own, 4, population, 3)[name][part], both[name][part], rtol=1e-5)
            np.testing.assert_allclose(shrunk(own, 100_000, population, 3)[name][part], own[name][part], rtol=1e-3)
            np.testing.assert_allclose(shrunk(own, 4, population, 0)[name][part], own[name][part])


def test_a_few_clips_are_aligned_less_far_than_their_own_statistics_would_take_them(tmp_path):
    voice, population = clips(2, offset=3.0), audio_statistics(clips(40, seed=1))
    own, heard = VoiceBook(tmp_path / "voices.sqlite").hear("carol", voice)
    sound = voice.inputs["mfcc"][:, :20]
    gap = {name: abs(view.inputs["mfcc"][:, :20].mean() - population["mfcc"][0].mean())
           for name, view in (("raw", voice), ("own", align_with(voice, own, population)),
                              ("calibrated", calibrated(voice, own, heard, population)))}
    assert gap["own"] < gap["calibrated"] < gap["raw"]  # part of the way: the prior voice stands beside the two
    assert sound.mean() > 2.5  # the voice really was far from the population


def _hear_many(path: str, seed: int) -> None:
    book = VoiceBook(path)
    for i in range(10):
        book.hear("shared", clips(1, seed=seed * 100 + i))


def test_processes_share_the_book_and_lose_no_clip(tmp_path):
    path = str(tmp_path / "voices.sqlite")
    workers = [multiprocessing.get_context("spawn").Process(target=_hear_many, args=(path, s)) for s in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert VoiceBook(path).clips("shared") == 30


def test_the_book_is_bounded_and_forgets_on_request(tmp_path):
    book = VoiceBook(tmp_path / "voices.sqlite", max_voices=3)
    for name in ("a", "b", "c", "d"):
        book.hear(name, clips(1))
    assert [book.clips(name) for name in ("a", "b", "c", "d")] == [0, 1, 1, 1]  # the least recently heard went
    assert book.forget("c") and not book.forget("c") and book.clips("c") == 0


@pytest.mark.parametrize("voice", ["", "x" * 129, "a\nb", "nul\x00", "../etc", " leading space"])
def test_ids_that_are_not_names_are_refused(tmp_path, voice):
    with pytest.raises(VoiceError, match="speaker id"):
        VoiceBook(tmp_path / "voices.sqlite").hear(voice, clips(1))

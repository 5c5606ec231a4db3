"""Preprocessing chunks: every clip in exactly one, sizes even, a count the workers share out evenly."""

import pytest

from tasks.preprocess import CHUNK_CLIPS, chunk_bounds


@pytest.mark.parametrize(("clips", "slots"), [(200, 2), (1000, 2), (7442, 64), (9, 1), (7, 4), (3, 2), (1, 8)])
def test_chunks_cover_every_clip_once_with_even_sizes(clips, slots):
    bounds = chunk_bounds(clips, slots)
    assert [i for start, stop in bounds for i in range(start, stop)] == list(range(clips))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= CHUNK_CLIPS and min(sizes) >= 1
    if clips >= 4 * slots:  # enough clips: each worker gets as many chunks as the others, several each
        assert len(bounds) % slots == 0 and len(bounds) >= 4 * slots


def test_200_clips_on_two_workers_are_14_chunks_of_14_or_15_not_12_of_16_and_one_of_8():
    assert sorted({stop - start for start, stop in chunk_bounds(200, 2)}) == [14, 15]
    assert len(chunk_bounds(200, 2)) == 14
    assert chunk_bounds(0, 2) == []

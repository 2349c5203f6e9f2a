"""Windowing, normalisation, padding and augmentation."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from dyna_stream.data.normalise import Normaliser
from dyna_stream.data.synthetic import moving_storms
from dyna_stream.data.windows import WindowDataset, random_crop_flip
from dyna_stream.errors import CheckpointError, DataError


@pytest.fixture
def storms():
    return moving_storms(frames=12, height=40, width=30)


def test_windows_slide_and_score_only_where_inputs_and_truth_are_valid(storms):
    windows = WindowDataset(storms, t_in=4, t_out=3, normaliser=Normaliser.fit(storms), fallback="persistence",
                            multiple=16)
    assert len(windows) == 12 - 4 - 3 + 1
    item = windows[2]
    assert item["frames"].shape == (4, 1, 48, 32) and item["target"].shape == (3, 1, 48, 32)
    assert not item["valid"][..., 40:, :].any() and not item["valid"][..., :, 30:].any()
    assert not item["valid"][..., 34:40, 24:30].any()  # the synthetic no-data corner
    physical = windows.physical(2)
    restored = windows.normaliser.inverse(item["target"][..., :40, :30].numpy())
    np.testing.assert_allclose(restored, physical["target"], atol=1e-4)
    np.testing.assert_allclose(physical["fallback"], np.repeat(physical["frames"][-1:], 3, 0))


def test_too_short_series_is_refused(storms):
    with pytest.raises(DataError, match="at least 13"):
        WindowDataset(storms, t_in=6, t_out=7, normaliser=Normaliser.fit(storms), fallback="persistence",
                      multiple=16)


def test_normaliser_round_trips_and_rejects_malformed_blocks(storms):
    normaliser = Normaliser.fit(storms)
    assert Normaliser.from_dict(normaliser.to_dict()) == normaliser
    assert -32.0 <= normaliser.low < -31.0 and normaliser.high > 30
    with pytest.raises(CheckpointError):
        Normaliser.from_dict({"mean": [0.0]})
    with pytest.raises(DataError, match="2 channels"):
        normaliser.check_channels(2)


def test_crop_flip_moves_every_array_together(storms):
    windows = WindowDataset(storms, t_in=4, t_out=3, normaliser=Normaliser.fit(storms), fallback="persistence",
                            multiple=16)
    item = windows[0]
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        crop = random_crop_flip(item, 16, 16, generator)
        assert crop["frames"].shape[-2:] == (16, 16)
        # persistence fallback equals the last input frame after any crop/flip
        torch.testing.assert_close(crop["fallback"][0], crop["frames"][-1])


def test_a_series_played_backwards_reverses_frames_and_masks_and_keeps_time_labels(storms):
    backwards = storms.time_reversed()
    np.testing.assert_array_equal(backwards.values, storms.values[::-1])
    np.testing.assert_array_equal(backwards.valid, storms.valid[::-1])
    np.testing.assert_array_equal(backwards.times, storms.times)          # ascending, regular
    assert backwards.values.flags.c_contiguous and "time-reversed" in backwards.name
    windows = WindowDataset(backwards, t_in=4, t_out=3, normaliser=Normaliser.fit(storms), fallback="persistence",
                            multiple=16)
    np.testing.assert_array_equal(windows.physical(0)["target"], storms.values[::-1][4:7])
    np.testing.assert_array_equal(backwards.time_reversed().values, storms.values)
    with pytest.raises(DataError, match="history frames"):
        replace(storms, context_frames=2).time_reversed()

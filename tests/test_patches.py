"""Training samples as (window, patch) pairs: the grid covers every pixel, a patch item is the window
item cut to the patch, bad strides are refused."""
import numpy as np
import pytest
import torch

from dyna_stream.data.normalise import Normaliser
from dyna_stream.data.patches import PatchWindows, patch_origins
from dyna_stream.data.synthetic import moving_storms
from dyna_stream.data.windows import WindowDataset
from dyna_stream.errors import ConfigError


@pytest.fixture
def windows():
    storms = moving_storms(frames=10, height=42, width=30)      # padded to 48 × 32 on the 8-pixel grid
    return WindowDataset(storms, t_in=3, t_out=2, normaliser=Normaliser.fit(storms), fallback="advection",
                         multiple=8)


@pytest.mark.parametrize(("size", "crop", "stride", "expected"), [
    (48, 16, 16, [0, 16, 32]), (48, 16, 12, [0, 12, 24, 32]), (48, 32, 8, [0, 8, 16]), (32, 32, 8, [0]),
    (16, 32, 8, [0]),
])
def test_origins_step_by_the_stride_and_the_last_patch_ends_flush(size, crop, stride, expected):
    origins = patch_origins(size, crop, stride)
    assert origins == expected
    covered = np.zeros(size, bool)
    for origin in origins:
        covered[origin:origin + crop] = True
    assert covered.all()


def test_a_patch_item_is_the_window_item_cut_to_the_patch(windows):
    patches = PatchWindows(windows, crop=16, stride=8)
    assert windows.padded_shape == (48, 32)
    assert patches.patches_per_window == 5 * 3 and len(patches) == len(windows) * 15
    for index in (0, 7, 15 + 14, len(patches) - 1):
        window, patch = patches.locate(index)
        top, left, height, width = patches.boxes()[patch]
        whole, part = windows[window], patches[index]
        assert set(part) == set(whole)
        for key, value in part.items():
            assert value.shape[-2:] == (16, 16)
            assert torch.equal(value, whole[key][..., top:top + height, left:left + width]), key
    assert not patches[14]["valid"][..., -6:, :].any()              # bottom-right patch: rows 42-47 are padding
    with pytest.raises(IndexError):
        patches.locate(len(patches))


def test_a_crop_larger_than_the_grid_takes_the_whole_side(windows):
    patches = PatchWindows(windows, crop=40, stride=8)
    assert patches.crop == (40, 32) and patches[0]["frames"].shape[-2:] == (40, 32)
    assert [tuple(o) for o in patches.origins] == [(0, 0), (8, 0)]


@pytest.mark.parametrize(("crop", "stride", "message"), [
    (20, 8, "multiples of the model's 8-pixel tile"), (16, 12, "multiples of the model's 8-pixel tile"),
    (16, 0, "multiples of the model's 8-pixel tile"), (16, 24, "would never be trained on"),
])
def test_patch_grids_off_the_tiles_or_with_gaps_are_refused(windows, crop, stride, message):
    with pytest.raises(ConfigError, match=message):
        PatchWindows(windows, crop=crop, stride=stride)

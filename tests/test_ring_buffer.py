"""RingBuffer: order, policies for duplicates, reordering, gaps, foreign grids and NaN."""
import numpy as np
import pytest

from dyna_stream.errors import DataError
from dyna_stream.stream.ring_buffer import BufferPolicy, Push, RingBuffer

SECOND = 1_000_000_000


def test_keeps_the_latest_frames_in_order():
    buffer = RingBuffer(3, 1, (2, 2))
    for t in range(5):
        assert buffer.push(np.full((2, 2), t, np.float32), t * SECOND) is Push.ACCEPTED
    frames, stamps = buffer.window()
    assert buffer.full and frames[:, 0, 0, 0].tolist() == [2, 3, 4] and stamps.tolist() == [2 * SECOND, 3 * SECOND,
                                                                                              4 * SECOND]
    frames[:] = -1                                     # the window is a copy
    assert buffer.window()[0][0, 0, 0, 0] == 2


def test_a_stride_feeds_every_kth_frame_back_from_the_newest():
    buffer = RingBuffer(3, 1, (2, 2), stride=5)          # a 1-minute sensor into a 5-minute model
    for t in range(10):
        buffer.push(np.full((2, 2), t, np.float32), t * SECOND)
        assert not buffer.full                            # (3 − 1) · 5 + 1 = 11 frames make a window
    buffer.push(np.full((2, 2), 10, np.float32), 10 * SECOND)
    frames, stamps = buffer.window()
    assert buffer.full and frames[:, 0, 0, 0].tolist() == [0, 5, 10] and (stamps // SECOND).tolist() == [0, 5, 10]
    buffer.push(np.full((2, 2), 11, np.float32), 11 * SECOND)
    assert buffer.window()[0][:, 0, 0, 0].tolist() == [1, 6, 11]
    with pytest.raises(ValueError, match="stride must be at least 1"):
        RingBuffer(3, 1, (2, 2), stride=0)


def test_duplicates_and_late_frames_are_dropped():
    buffer = RingBuffer(3, 1, (2, 2))
    buffer.push(np.zeros((2, 2)), 10)
    assert buffer.push(np.ones((2, 2)), 10) is Push.DUPLICATE
    assert buffer.push(np.ones((2, 2)), 5) is Push.OUT_OF_ORDER
    assert len(buffer) == 1 and buffer.window()[0].max() == 0


def test_a_gap_restarts_the_window():
    buffer = RingBuffer(3, 1, (2, 2), BufferPolicy(period_ns=SECOND, max_gap_periods=2.5))
    for t in range(3):
        buffer.push(np.zeros((2, 2)), t * SECOND)
    assert buffer.push(np.zeros((2, 2)), 10 * SECOND) is Push.GAP_RESET
    assert len(buffer) == 1 and not buffer.full
    assert buffer.push(np.zeros((2, 2)), 9 * SECOND) is Push.OUT_OF_ORDER      # late, within the limit
    buffer.push(np.zeros((2, 2)), 11 * SECOND)
    assert buffer.push(np.zeros((2, 2)), 1 * SECOND) is Push.OUT_OF_ORDER      # one stray old stamp: dropped
    assert buffer.push(np.zeros((2, 2)), 12 * SECOND) is Push.ACCEPTED and len(buffer) == 3   # the window lives
    assert buffer.push(np.zeros((2, 2)), 1 * SECOND) is Push.OUT_OF_ORDER
    assert buffer.push(np.zeros((2, 2)), 2 * SECOND) is Push.GAP_RESET         # a second, in order: clock reset
    assert buffer.push(np.zeros((2, 2)), 3 * SECOND) is Push.ACCEPTED and len(buffer) == 2


def test_values_outside_the_model_range_are_refused_nan_is_not():
    buffer = RingBuffer(2, 1, (2, 2), BufferPolicy(limits=(-95.5, 158.5)))
    for bad in (1e6, -1e6, 3e38, 1e300):
        with pytest.raises(DataError, match="outside what this model takes|infinite"):
            buffer.push(np.full((2, 2), bad), 1)
    assert len(buffer) == 0
    assert buffer.push(np.array([[np.nan, 20.0], [-32.0, 60.0]]), 2) is Push.ACCEPTED


def test_foreign_grids_are_resized_or_rejected_with_the_fix():
    strict = RingBuffer(2, 1, (4, 6))
    with pytest.raises(DataError, match=r"resize\) or publish 4×6 frames"):
        strict.push(np.zeros((8, 12)), 0)
    with pytest.raises(DataError, match="1 channel"):
        strict.push(np.zeros((2, 4, 6)), 0)
    lenient = RingBuffer(2, 1, (4, 6), BufferPolicy(resize=True))
    assert lenient.push(np.ones((8, 12)) * 3, 0) is Push.RESIZED
    np.testing.assert_allclose(lenient.window()[0][0, 0], 3.0)


def test_grid_comes_from_the_first_frame_nan_is_no_coverage_and_inf_is_refused():
    buffer = RingBuffer(2, 1)
    buffer.push(np.zeros((5, 7)), 0)
    assert buffer.frame_shape == (1, 5, 7)
    with pytest.raises(DataError, match="infinite"):
        buffer.push(np.full((5, 7), np.inf), 1)
    assert len(buffer) == 1
    partial = np.zeros((5, 7))
    partial[:, 4:] = np.nan                    # outside the sensor's coverage
    buffer.push(partial, 2)
    assert len(buffer) == 2 and np.isnan(buffer.window()[0][-1, 0, :, 4:]).all()

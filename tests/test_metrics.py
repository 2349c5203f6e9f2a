"""Scores: exact values on hand-made cases."""
import numpy as np
import pytest

from dyna_stream.evaluate.metrics import ForecastScores, ssim_map


def test_perfect_forecast_scores_perfectly():
    truth = np.random.default_rng(0).uniform(-32, 50, size=(3, 1, 20, 20)).astype(np.float32)
    scores = ForecastScores(3, (20.0, 30.0), data_range=100.0)
    scores.update(truth, truth, np.ones_like(truth, bool))
    result = scores.result()
    assert result["mse_mean"] == 0 and result["mae_mean"] == 0
    assert result["ssim_mean"] == pytest.approx(1.0)
    assert result["csi@20_mean"] == 1.0 and result["csi@30"] == [1.0, 1.0, 1.0]


def test_errors_pool_over_valid_cells_and_csi_sums_before_dividing():
    truth = np.zeros((1, 1, 2, 2), np.float32)
    forecast = np.array([[[[1.0, 3.0], [100.0, 25.0]]]], np.float32)
    valid = np.array([[[[True, True], [False, True]]]])
    scores = ForecastScores(1, (20.0,), data_range=10.0)
    scores.update(forecast, truth, valid)
    truth2 = np.full((1, 1, 2, 2), 30.0, np.float32)
    scores.update(truth2, truth2, np.ones_like(valid))  # 4 hits
    result = scores.result()
    assert result["mse"][0] == pytest.approx((1 + 9 + 625 + 0) / 7)
    assert result["mae"][0] == pytest.approx((1 + 3 + 25) / 7)
    assert result["csi@20"][0] == pytest.approx(4 / 5)     # one false alarm in the first window
    assert result["scored_cells"] == 7


def test_ssim_drops_for_a_shifted_field():
    image = np.zeros((32, 32), np.float32)
    image[10:20, 10:20] = 40
    assert ssim_map(image, image, 50).mean() == pytest.approx(1.0)
    assert ssim_map(np.roll(image, 5, axis=1), image, 50).mean() < 0.9


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes differ"):
        ForecastScores(1, (), 1.0).update(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 3)), np.ones((1, 1, 2, 2), bool))


def test_kept_event_share_counts_event_cells_inside_the_kept_tiles():
    from dyna_stream.data.normalise import Normaliser
    from dyna_stream.data.synthetic import moving_storms
    from dyna_stream.data.windows import WindowDataset
    from dyna_stream.evaluate.runner import WindowForecast, score

    series = moving_storms(frames=6, height=32, width=32)
    windows = WindowDataset(series, t_in=3, t_out=2, normaliser=Normaliser.fit(series), fallback="persistence",
                            multiple=8)
    truths = [windows.physical(i) for i in range(len(windows))]
    events = [(t["target"] >= 20.0) & t["valid"] for t in truths]
    left = np.zeros((32, 32), np.float32)
    left[:, :16] = 1.0

    def share(kept):
        forecasts = (WindowForecast(i, t["target"], kept_tiles=kept) for i, t in enumerate(truths))
        return score(windows, forecasts, thresholds=(20.0, 30.0), data_range=100.0).get("kept_event_share")

    expected = sum(e[..., :16].sum() for e in events) / sum(e.sum() for e in events)
    assert 0 < expected < 1
    assert share(left) == pytest.approx(expected)
    assert share(1 - left) == pytest.approx(1 - expected)
    assert share(np.ones((32, 32))) == 1.0 and share(None) is None          # no mask: not reported


def test_frequency_bias_says_damped_or_overpainted():
    truth = np.zeros((1, 1, 4, 4), np.float32)
    truth[..., :2, :] = 30.0                                    # 8 event cells
    damped = np.where(np.arange(16).reshape(1, 1, 4, 4) < 4, 30.0, 0.0).astype(np.float32)   # paints 4 of them
    scores = ForecastScores(1, (20.0,), data_range=10.0)
    scores.update(damped, truth, np.ones_like(truth, bool))
    assert scores.result()["bias@20"] == [pytest.approx(0.5)]
    scores.update(np.full_like(truth, 30.0), truth, np.ones_like(truth, bool))   # 8 hits + 8 false alarms
    assert scores.result()["bias@20_mean"] == pytest.approx((4 + 16) / 16)
    nan_outside = np.where(truth > 0, truth, np.nan).astype(np.float32)
    clean = ForecastScores(1, (20.0,), data_range=10.0)
    clean.update(nan_outside, truth, truth > 0)                  # NaN only where nothing is scored
    assert clean.result()["mse_mean"] == 0 and np.isfinite(clean.result()["ssim_mean"])


def test_kept_tiles_outside_coverage_are_counted_per_tile():
    from dyna_stream.evaluate.runner import kept_tiles_outside

    kept, coverage = np.zeros((8, 12), np.float32), np.zeros((8, 12), bool)
    coverage[:, :5] = True                       # tiles of 4: columns 0-3 covered, 4-7 partly, 8-11 not
    kept[:4, :] = 1                              # three kept tiles in the top row
    assert kept_tiles_outside(kept, coverage, 4) == (1, 3)
    assert kept_tiles_outside(kept[:6, :10], coverage[:6, :10], 4) == (1, 3)   # ragged edges pad as uncovered


def test_strip_titles_say_minutes_and_valid_times():
    from dyna_stream.evaluate.figures import frame_label

    last = np.datetime64("2017-05-09T12:05")
    assert frame_label(-5, 5.0, last) == "-25 min\n11:40 UTC"
    assert frame_label(0, 5.0, last) == "0 min\n12:05 UTC"
    assert frame_label(6, 5.0, last) == "+30 min\n12:35 UTC"
    assert frame_label(2, 5.0, np.datetime64("NaT")) == "+10 min"          # no 1970 when times are unknown
    assert frame_label(-1, None, None) == "-1 step" and frame_label(3, None, None) == "+3 steps"

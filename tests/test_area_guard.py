"""The echo-area guard: damped forecasts keep a share of the observed echo area, nothing else moves."""
import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from dyna_stream.area_guard import guard_field, guard_forecast
from dyna_stream.assets import BUNDLED_MODEL, BUNDLED_SAMPLE
from dyna_stream.config import AreaGuardConfig, ModelConfig
from dyna_stream.data.registry import load_path
from dyna_stream.model.checkpoint import load_checkpoint
from dyna_stream.predictor import Predictor

THRESHOLDS = np.arange(0.0, 50.0, 2.5)     # dBZ


def speckle(seed: int, shape=(48, 40)) -> np.ndarray:
    """A radar-like field (dBZ): rain cells of pixel-scale speckle around 20 dBZ, dry elsewhere (0)."""
    rng = np.random.default_rng(seed)
    cells = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 4) > 0.5
    return np.where(cells, 14 + 10 * rng.random(shape), 0).astype(np.float32)


def area(field: np.ndarray, covered: np.ndarray, threshold: float) -> int:
    return int(((field >= threshold) & covered).sum())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ratio,floor", [(0.85, 10.0), (1.0, 10.0), (0.5, -np.inf)])
def test_a_damped_forecast_keeps_the_share_of_the_observed_area_at_every_intensity_over_the_floor(seed, ratio,
                                                                                                 floor):
    observed = speckle(seed)
    damped = cv2.GaussianBlur(observed, (0, 0), 1.5)              # what an MSE-trained forecast does to speckle
    covered = np.ones(observed.shape, bool)
    covered[:, -6:] = False                                       # no radar there
    guarded = guard_field(damped, observed, covered, ratio=ratio, floor=floor)
    assert area(damped, covered, 20.0) < 0.5 * area(observed, covered, 20.0)     # the damping is real
    for threshold in THRESHOLDS[THRESHOLDS >= floor]:
        assert area(guarded, covered, threshold) >= ratio * area(observed, covered, threshold)
    assert (guarded >= damped).all()                              # only ever raised
    order = np.argsort(damped[covered], kind="stable")            # the forecast's pattern (ranks) is kept
    assert (np.diff(guarded[covered][order]) >= 0).all()
    assert np.array_equal(guarded[~covered], damped[~covered])
    # each raised cell takes an observed value: the smallest raise that meets the rule
    raised = guarded != damped
    assert raised.any() and np.isin(guarded[raised], observed[covered]).all()


def test_a_forecast_that_paints_enough_and_echo_below_the_floor_are_left_as_they_are():
    observed = speckle(7)
    covered = np.ones(observed.shape, bool)
    wetter = observed + 1.0
    assert np.array_equal(guard_field(wetter, observed, covered, ratio=0.85, floor=10.0), wetter)
    drizzle = np.minimum(observed, 8.0)                           # all echo below the 10 dBZ floor
    faded = cv2.GaussianBlur(drizzle, (0, 0), 2.0)
    assert np.array_equal(guard_field(faded, drizzle, covered, ratio=0.85, floor=10.0), faded)
    nothing = np.zeros_like(covered)
    assert np.array_equal(guard_field(faded, drizzle, nothing, ratio=0.85, floor=10.0), faded)


def test_every_lead_and_channel_is_guarded_against_the_last_observation():
    observed = np.stack([speckle(1), speckle(2)])                 # (C, H, W)
    forecast = np.stack([cv2.GaussianBlur(observed[c], (0, 0), s) for s in (1.0, 2.0, 3.0)
                         for c in range(2)]).reshape(3, 2, *observed.shape[1:])
    covered = np.ones(observed.shape[1:], bool)
    guarded = guard_forecast(forecast, observed, covered, ratio=0.85, floor=10.0)
    assert guarded.shape == forecast.shape
    for lead in range(3):
        for channel in range(2):
            assert np.array_equal(guarded[lead, channel], guard_field(forecast[lead, channel], observed[channel],
                                                                       covered, ratio=0.85, floor=10.0))


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.01])
def test_a_ratio_outside_0_to_1_is_refused(ratio):
    with pytest.raises(ValidationError, match="ratio"):
        AreaGuardConfig(ratio=ratio, floor=10.0)
    with pytest.raises(ValueError, match="ratio"):
        guard_field(np.zeros((4, 4)), np.zeros((4, 4)), np.ones((4, 4), bool), ratio=ratio, floor=0.0)


def test_models_have_no_guard_unless_configured():
    assert ModelConfig().area_guard is None
    assert ModelConfig(area_guard={"floor": 10.0}).area_guard.ratio == 0.85


def test_the_bundled_radar_model_guards_its_forecasts_and_can_be_asked_not_to():
    checkpoint = load_checkpoint(BUNDLED_MODEL)
    guard = checkpoint.config.model.area_guard
    assert guard is not None and (guard.ratio, guard.floor) == (0.85, 10.0)
    frames = load_path(BUNDLED_SAMPLE).values[-checkpoint.t_in:]
    raw = Predictor(checkpoint, engine="sparse", device="cpu", area_guard=False)(frames)
    guarded = Predictor(checkpoint, engine="sparse", device="cpu")(frames)
    covered, last = guarded.coverage, frames[-1, 0]
    assert area(raw.forecast[-1, 0], covered, 20.0) < 0.5 * area(last, covered, 20.0)   # FMI speckle: damped
    assert np.array_equal(np.isnan(raw.forecast), np.isnan(guarded.forecast))    # "no radar" stays NaN
    assert (guarded.forecast[:, :, covered] >= raw.forecast[:, :, covered]).all()
    for lead in range(checkpoint.t_out):
        for threshold in THRESHOLDS[THRESHOLDS >= guard.floor]:
            assert area(guarded.forecast[lead, 0], covered, threshold) >= guard.ratio * area(last, covered, threshold)
    assert np.array_equal(raw.importance, guarded.importance) and raw.macs == guarded.macs

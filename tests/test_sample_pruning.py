"""Dynamic sample pruning (ST-Prune) and its baselines: exact kept fractions and weights, the
annealing schedule, scores from real losses, and the untouched step-based trainer."""
import math

import numpy as np
import pytest
import torch

from dyna_stream.data.registry import get_dataset
from dyna_stream.data.synthetic import moving_storms
from dyna_stream.errors import ConfigError
from dyna_stream.model.checkpoint import build_model, load_checkpoint
from dyna_stream.model.loss import LossWeights, dyna_loss
from dyna_stream.train import trainer as trainer_module
from dyna_stream.train.sample_pruning import (
    PRUNERS,
    LossOnly,
    StaticRandom,
    STPrune,
    keep_schedule,
    make_pruner,
    mean_kept_fraction,
    region_energies,
    sample_complexity,
)
from dyna_stream.train.trainer import _batch, _lr_factor, _seed_everything, prepare_data, train, training_samples

from conftest import tiny_config


def storm_data(config, frames=40):
    series = moving_storms(frames=frames, height=32, width=32)
    return prepare_data(config, 8, train_series=series, val_series=moving_storms(frames=16, height=32, width=32))


def pruning_config(tmp_path, *overrides):
    return tiny_config(tmp_path, "train.epochs=4", "train.batch_size=4", *overrides)


@pytest.fixture
def data(tmp_path):
    return storm_data(pruning_config(tmp_path))


def test_each_epoch_keeps_all_high_scores_and_an_exact_share_of_the_low_ones(tmp_path, data):
    config = pruning_config(tmp_path, "train.sample_pruning=st-prune", "train.keep_ratio=0.3",
                            "train.prune_quantile=0.6", "train.epochs=10", "train.anneal_fraction=0.2").train
    pruner = STPrune(data.train, config, 10, torch.Generator().manual_seed(0))
    losses = np.random.default_rng(1).uniform(1.0, 2.0, pruner.n)
    pruner.observe(np.arange(pruner.n), losses)                                    # every window has a loss
    scores = pruner.scores()
    low = np.flatnonzero(scores < np.quantile(scores, 0.6))
    selection = pruner.select(0)
    kept_low = np.setdiff1d(selection.indices, np.setdiff1d(np.arange(pruner.n), low))
    assert set(np.setdiff1d(np.arange(pruner.n), low)) <= set(selection.indices)   # every high-score window
    assert len(kept_low) == round(0.3 * len(low)) and len(set(selection.indices)) == selection.size
    weights = dict(zip(selection.indices, selection.weights))
    assert all(weights[i] == 1.0 for i in np.setdiff1d(selection.indices, low))
    np.testing.assert_allclose([weights[i] for i in kept_low], len(low) / len(kept_low), rtol=1e-6)
    # unbiased: the weighted sum over kept low-score windows equals the low-score total in expectation
    estimates = []
    for seed in range(300):
        pruner.generator.manual_seed(seed)
        s = pruner.select(0)
        estimates.append(sum(weights_i * losses[i] for i, weights_i in zip(s.indices, s.weights) if i in set(low)))
    assert abs(np.mean(estimates) - losses[low].sum()) < 0.02 * losses[low].sum()


def test_the_schedule_holds_r_then_rises_linearly_to_full_data_at_the_last_epoch():
    ratios = [keep_schedule(e, 10, 0.25, 0.3) for e in range(10)]
    assert ratios[:7] == [0.25] * 7
    assert ratios[-1] == 1.0 and np.all(np.diff(ratios[6:]) > 0)
    np.testing.assert_allclose(ratios[7:], 0.25 + 0.75 * np.array([1, 2, 3]) / 3)


def test_the_last_epoch_trains_on_every_window(tmp_path, data):
    config = pruning_config(tmp_path, "train.sample_pruning=st-prune").train
    pruner = STPrune(data.train, config, 4, torch.Generator().manual_seed(0))
    pruner.observe(np.arange(pruner.n), np.random.default_rng(0).random(pruner.n))
    selection = pruner.select(3)
    assert sorted(selection.indices) == list(range(pruner.n)) and np.all(selection.weights == 1.0)


def test_complexity_ranks_moving_structure_above_calm_windows(tmp_path):
    config = pruning_config(tmp_path)
    spec = get_dataset(config.data.name)
    calm = moving_storms(frames=20, height=32, width=32)
    calm.values[:10] = calm.fill_value                        # the first windows see an empty sky
    data = prepare_data(config, 8, train_series=calm, val_series=calm)
    complexity = sample_complexity(data.train)
    assert complexity.shape == (len(data.train),) and 0.0 <= complexity.min() <= complexity.max() <= 1.0
    first_busy = 10 - spec.t_in - spec.t_out + 1
    assert complexity[0] < complexity[first_busy + 2:].min()


def test_region_energies_are_the_means_over_each_box(tmp_path):
    config = pruning_config(tmp_path)
    data = storm_data(config, frames=20)
    boxes = np.array([[0, 0, 32, 32], [8, 16, 16, 16], [24, 24, 16, 16], [40, 0, 8, 8]])   # the last: padding only
    temporal, spatial = region_energies(data.train, boxes, chunk=3)
    assert temporal.shape == spatial.shape == (len(data.train), 4)
    values, valid = data.train.series.values.astype(np.float64), data.train.series.valid
    length = data.train.t_in + data.train.t_out
    for window in (0, 5, len(data.train) - 1):
        for box, (top, left, height, width) in enumerate(boxes[:3]):
            x = values[window:window + length, :, top:top + height, left:left + width]
            ok = valid[window:window + length, :, top:top + height, left:left + width]
            both = ok[1:] & ok[:-1]
            assert temporal[window, box] == pytest.approx((((x[1:] - x[:-1]) ** 2) * both).sum() / both.sum())
            # neighbour pairs whose top/left cell lies in the box (the one beyond its edge included)
            xe = values[window:window + length, :, top:top + height + 1, left:left + width + 1]
            oke = valid[window:window + length, :, top:top + height + 1, left:left + width + 1]
            rows, cols = min(height, xe.shape[-2] - 1), min(width, xe.shape[-1] - 1)
            dy = oke[..., 1:rows + 1, :width] & oke[..., :rows, :width]
            dx = oke[..., :height, 1:cols + 1] & oke[..., :height, :cols]
            energy = ((np.diff(xe[..., :rows + 1, :width], axis=-2) ** 2) * dy).sum() + \
                ((np.diff(xe[..., :height, :cols + 1], axis=-1) ** 2) * dx).sum()
            assert spatial[window, box] == pytest.approx(energy / (dy.sum() + dx.sum()))
    assert np.all(temporal[:, 3] == 0) and np.all(spatial[:, 3] == 0)


def test_patch_complexity_ranks_the_storm_above_the_empty_sky(tmp_path):
    config = pruning_config(tmp_path, "train.sample_unit=patch", "train.crop=16", "train.patch_stride=16")
    series = moving_storms(frames=12, height=32, width=32)
    series.values[..., :16, :] = series.fill_value                 # the top half: no echo at any time
    data = prepare_data(config, 8, train_series=series, val_series=series)
    samples = training_samples(config.train, data.train)
    complexity = sample_complexity(samples).reshape(len(data.train), samples.patches_per_window)
    top = samples.origins[:, 0] < 16
    assert complexity.shape[1] == 4 and top.sum() == 2
    assert complexity[:, top].max() < complexity[:, ~top].min()


def test_patch_samples_are_trained_on_and_scored_one_by_one(tmp_path):
    config = pruning_config(tmp_path, "train.sample_pruning=st-prune", "train.epochs=2", "train.sample_unit=patch",
                            "train.crop=16")
    data = storm_data(config, frames=16)
    samples = training_samples(config.train, data.train)
    assert len(samples) == len(data.train) * 9                    # 32 × 32 at stride 8: 3 × 3 patches
    seen, shapes = {}, set()
    original_observe, original_optimise = STPrune.observe, trainer_module._Session.optimise

    def observe(self, indices, losses):
        seen.update(zip(indices.tolist(), losses))
        original_observe(self, indices, losses)

    def optimise(self, batch, sample_weight=None):
        shapes.add(tuple(batch["frames"].shape[-2:]))
        return original_optimise(self, batch, sample_weight)

    STPrune.observe, trainer_module._Session.optimise = observe, optimise
    try:
        checkpoint = load_checkpoint(train(config, progress=False, data=data))
    finally:
        STPrune.observe, trainer_module._Session.optimise = original_observe, original_optimise
    assert shapes == {(16, 16)} and len(seen) == len(samples)
    assert checkpoint.metrics["history"][-1]["kept"] == len(samples)


def test_multi_source_patches_are_cut_per_grid_and_ranked_together(tmp_path):
    """Sources on different grids (FMI, KNMI, MRMS regions): each cut on its own grid, one sample
    set, complexity ranked over every source at once (a calm source below a stormy one), and an
    ST-Prune run trains on patches of both."""
    config = pruning_config(tmp_path, "train.sample_pruning=st-prune", "train.epochs=2", "train.sample_unit=patch",
                            "train.crop=16", "train.patch_stride=16")
    stormy, calm = moving_storms(frames=12, height=32, width=48), moving_storms(frames=12, height=32, width=32, seed=3)
    calm.values[:] = calm.fill_value                                 # no echo at all
    data = prepare_data(config, 8, train_series=[stormy, calm], val_series=stormy)
    samples = training_samples(config.train, data.train)
    first, second = samples.parts
    assert (first.patches_per_window, second.patches_per_window) == (6, 4)
    assert len(samples) == len(data.train.parts[0]) * 6 + len(data.train.parts[1]) * 4
    assert torch.equal(samples[len(first)]["frames"], second[0]["frames"])      # the second source starts there
    complexity = sample_complexity(samples)
    assert complexity.shape == (len(samples),) and complexity[len(first):].max() < complexity[:len(first)].max()
    checkpoint = load_checkpoint(train(config, progress=False, data=data))
    assert checkpoint.metrics["history"][-1]["kept"] == len(samples)


def test_scores_follow_the_real_losses_of_training(tmp_path):
    config = pruning_config(tmp_path, "train.sample_pruning=st-prune", "train.epochs=2")
    data = storm_data(config)
    seen = {}
    original = STPrune.observe

    def spy(self, indices, losses):
        seen.update(zip(indices.tolist(), losses))
        original(self, indices, losses)

    STPrune.observe = spy
    try:
        checkpoint = load_checkpoint(train(config, progress=False, data=data))
    finally:
        STPrune.observe = original
    assert len(seen) == len(data.train)                      # every window trained on at least once
    assert all(math.isfinite(v) and v > 0 for v in seen.values()) and len(set(seen.values())) > 1
    history = checkpoint.metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["kept"] == len(data.train)
    assert history[0]["samples"] < len(data.train) + 1 and checkpoint.metrics["samples"] > len(data.train)


def test_per_sample_losses_are_the_batch_task_loss_and_weights_scale_it(tiny_model):
    batch = {"frames": torch.randn(3, 3, 1, 16, 16), "fallback": torch.zeros(3, 2, 1, 16, 16),
             "target": torch.randn(3, 2, 1, 16, 16), "valid": torch.ones(3, 2, 1, 16, 16, dtype=torch.bool)}
    prediction = tiny_model(batch["frames"], batch["fallback"], data_sparsity=0.5, model_sparsity=0.5)
    _, plain = dyna_loss(prediction, batch["target"], batch["valid"], weights=LossWeights(), model_sparsity=0.5,
                         gate_mode="topk")
    _, weighted = dyna_loss(prediction, batch["target"], batch["valid"], weights=LossWeights(), model_sparsity=0.5,
                            gate_mode="topk", sample_weight=torch.tensor([1.0, 2.0, 4.0]))
    assert plain["task"] == pytest.approx(np.mean(plain["per_sample"]), rel=1e-6)
    assert weighted["task"] == pytest.approx(np.mean(np.array(plain["per_sample"]) * [1, 2, 4]), rel=1e-6)


def test_baselines_static_random_is_fixed_and_loss_only_keeps_unseen_windows(tmp_path, data):
    config = pruning_config(tmp_path, "train.sample_pruning=static-random", "train.epochs=10").train
    static = StaticRandom(data.train, config, 10, torch.Generator().manual_seed(0))
    first = static.select(0).indices
    assert np.array_equal(first, static.select(9).indices)
    assert len(first) == round(mean_kept_fraction(config, 10) * len(data.train))
    loss_only = LossOnly(data.train, config, 10, torch.Generator().manual_seed(0))
    assert loss_only.select(0).size == len(data.train)     # no losses yet: nothing to prune on
    assert set(PRUNERS) == {"off", "st-prune", "infobatch", "static-random"}


def test_pruning_off_leaves_the_step_trainer_bit_identical(tmp_path):
    """A reference copy of the step-based loop as it was before sample pruning existed."""
    config = tiny_config(tmp_path, "train.validate_every=100")
    data = storm_data(config, frames=16)
    trained = load_checkpoint(train(config, progress=False, data=data)).model.state_dict()

    cfg = config.train
    generator = _seed_everything(cfg.seed)
    spec = get_dataset(config.data.name)
    build_model(config.model, t_in=spec.t_in, t_out=spec.t_out, channels=1)      # the tile-size probe
    model = build_model(config.model, t_in=spec.t_in, t_out=spec.t_out, channels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg.warmup_steps, cfg.steps))
    for _ in range(cfg.steps):
        model.train()
        batch = _batch(data.train, cfg.batch_size, cfg.crop, model.tile_size, generator)
        sd, sw = (float(torch.empty(1).uniform_(*cfg.sparsity_range, generator=generator)) for _ in range(2))
        prediction = model(batch["frames"], batch["fallback"], coverage=batch["coverage"], data_sparsity=sd,
                           model_sparsity=sw, policy="dyna")
        loss, _ = dyna_loss(prediction, batch["target"], batch["valid"],
                            weights=LossWeights(cfg.lambda_data, cfg.lambda_model, cfg.lambda_budget),
                            model_sparsity=sw, gate_mode="topk")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
    for name, value in model.state_dict().items():
        assert torch.equal(trained[name], value), name


@pytest.mark.parametrize(("override", "message"), [
    ("train.keep_ratio=0", "greater than 0"), ("train.keep_ratio=1.5", "less than or equal to 1"),
    ("train.anneal_fraction=0", "never returns to the full data"),
])
def test_bad_pruning_settings_are_refused_with_the_reason(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        pruning_config(tmp_path, "train.sample_pruning=st-prune", override)


def test_pruning_without_epochs_and_tiny_data_sets_are_handled(tmp_path, caplog):
    with pytest.raises(ConfigError, match="set train.epochs"):
        tiny_config(tmp_path, "train.sample_pruning=st-prune")
    config = pruning_config(tmp_path, "train.sample_pruning=st-prune")
    tiny = storm_data(config, frames=14)                    # 3 windows, fewer than MIN_WINDOWS
    pruner = make_pruner(tiny.train, config.train, 4, torch.Generator())
    assert type(pruner).__name__ == "SamplePruner" and "training on the full data instead" in caplog.text


def test_a_bare_yaml_off_means_no_pruning(tmp_path):
    assert tiny_config(tmp_path, "train.sample_pruning=off").train.sample_pruning == "off"

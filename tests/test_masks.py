"""Mask primitives: exact budgets, straight-through gradients, tile geometry."""
import math

import pytest
import torch

from dyna_stream.model import masks


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("total", [1, 7, 16, 240])
def test_topk_keeps_exactly_the_budget(sparsity, total):
    scores = torch.rand(3, total)
    keep = masks.keep_count(total, sparsity)
    assert keep == max(1, math.ceil((1 - sparsity) * total - 1e-9))
    hard = masks.topk_mask(scores, keep)
    assert (hard.sum(1) == keep).all()
    kept_min = torch.where(hard > 0, scores, torch.inf).min(1).values
    dropped_max = torch.where(hard > 0, -torch.inf, scores).max(1).values
    assert (kept_min >= dropped_max).all()


def test_sparsity_outside_range_is_refused():
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            masks.keep_count(10, bad)


def test_topk_ste_passes_gradients_straight_through():
    scores = torch.rand(2, 10, requires_grad=True)
    weights = torch.arange(10.0)
    (masks.topk_ste(scores, 0.5) * weights).sum().backward()
    torch.testing.assert_close(scores.grad, weights.expand(2, -1))


def test_threshold_gate_is_hard_forward_and_trains_the_threshold():
    importance = torch.tensor([[0.1, 0.45, 0.55, 0.9]], requires_grad=True)
    tau = torch.tensor(0.5, requires_grad=True)
    gate = masks.threshold_ste(importance, tau)
    assert gate.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    gate.sum().backward()
    assert tau.grad < 0 and (importance.grad > 0).all()


def test_tile_mask_selects_the_tiles_with_highest_mean_importance():
    importance = torch.zeros(1, 1, 8, 12)
    importance[..., 4:8, 8:12] = 1.0
    importance[..., 0:4, 0:4] = 0.5
    mask = masks.tile_mask(importance, 4, sparsity=0.7)  # 6 tiles, keep 2
    assert mask.shape == (1, 1, 2, 3) and mask.sum() == 2
    assert mask[0, 0, 1, 2] == 1 and mask[0, 0, 0, 0] == 1
    with pytest.raises(ValueError, match="multiple of the tile size"):
        masks.tile_mask(torch.zeros(1, 1, 9, 12), 4, 0.5)


def test_expand_tiles_repeats_blocks_and_rejects_partial_tiles():
    grid = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    full = masks.expand_tiles(grid, (4, 6))
    assert full.shape == (1, 1, 4, 6) and full[0, 0, :2, :3].eq(1).all() and full[0, 0, :2, 3:].eq(0).all()
    with pytest.raises(ValueError, match="whole tiles"):
        masks.expand_tiles(grid, (5, 6))


def test_fail_tiles_prunes_the_stated_share_of_kept_tiles_only():
    torch.manual_seed(0)
    mask = (torch.rand(3, 1, 6, 8) < 0.5).float()
    failed = masks.fail_tiles(mask, 0.25)
    for before, after in zip(mask.flatten(1), failed.flatten(1)):
        assert int(before.sum() - after.sum()) == int(0.25 * before.sum())
        assert (after <= before).all()                       # only kept tiles flip, never the other way
    assert masks.fail_tiles(None, 0.1) is None


def test_tiles_without_coverage_never_compete():
    importance = torch.rand(3, 1, 16, 16, requires_grad=True)
    coverage = torch.ones(3, 1, 16, 16)
    coverage[0, :, :, 8:] = 0          # sample 0: right half has no radar
    coverage[1, :, 0, 0] = 0           # sample 1: one missing cell leaves its tile covered
    coverage[2] = 0                    # sample 2: no radar at all
    with torch.no_grad():
        importance[0, :, :, 8:] = 10.0     # the uncovered tiles would win on importance alone
    covered = masks.covered_tiles(coverage, 4)
    assert covered.sum((1, 2, 3)).tolist() == [8, 16, 0]
    mask = masks.tile_mask(importance, 4, sparsity=0.5, covered=covered)
    assert mask.sum((1, 2, 3)).tolist() == [masks.keep_count(8, 0.5), masks.keep_count(16, 0.5), 0]
    assert not (mask.bool() & ~covered).any()
    mask.sum().backward()                  # straight through to the importance map
    assert importance.grad.abs().sum() > 0


@pytest.mark.parametrize("cap", [0.0, 0.5])
def test_threshold_budget_keeps_the_tiles_over_the_threshold_within_its_bounds(cap):
    """Calm (nothing over τ), average and stormy (everything over τ) samples: each keeps its tiles
    over τ, never fewer than top-k at max_sparsity nor more than top-k at the cap sd."""
    importance = torch.zeros(3, 1, 16, 16)
    importance[1, :, :8, :8] = 0.9          # 4 of 16 tiles over τ
    importance[2] = 0.8                     # all 16 over τ
    budget = masks.ContentBudget(threshold=0.5, max_sparsity=0.9)
    mask = masks.tile_mask(importance, 4, sparsity=cap, budget=budget)
    kept = mask.sum((1, 2, 3)).tolist()
    assert kept == [masks.keep_count(16, 0.9), 4, masks.keep_count(16, cap)] == [2, 4, 16 if cap == 0 else 8]
    assert mask[1, 0, :2, :2].all()                     # the 4 kept are the 4 over τ
    assert mask[0].sum() < mask[1].sum() < mask[2].sum()   # a calm window costs less than a storm
    covered = torch.ones(3, 1, 4, 4, dtype=torch.bool)
    covered[2, :, 2:] = False                # half the storm has no radar: only covered tiles count
    bounded = masks.tile_mask(importance, 4, sparsity=cap, covered=covered, budget=budget)
    assert bounded[2].sum() == masks.keep_count(8, cap) and not (bounded.bool() & ~covered).any()


def test_threshold_budget_refuses_bad_bounds():
    with pytest.raises(ValueError, match="max_sparsity"):
        masks.ContentBudget(0.5, max_sparsity=1.0)
    assert masks.ContentBudget(0.5, 0.5).keep(above=0, total=0, sparsity=0.3) == 0   # no coverage: nothing
    assert masks.ContentBudget(0.5, 0.2).keep(above=1, total=10, sparsity=0.6) == 4  # cap above the floor wins


def test_exact_ties_are_broken_by_index_the_same_way_in_every_mask_routine():
    """Calm tiles of identical input score exactly alike: which of them a point keeps must not
    depend on the routine (top-k at a fixed count vs ranked per-sample counts: static shapes)."""
    scores = torch.tensor([[0.5, 0.2, 0.2, 0.9, 0.2, 0.2, 0.1, 0.2]])
    for keep in range(1, 9):
        hard = masks.topk_mask(scores, keep)
        assert torch.equal(hard, masks.ranked_mask(scores, torch.tensor([keep])))
        tied = hard[0, [1, 2, 4, 5, 7]]                          # the 0.2s: the lowest indices first
        assert torch.equal(tied, torch.sort(tied, descending=True).values)

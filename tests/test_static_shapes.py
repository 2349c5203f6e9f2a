"""Static shapes per operating point and graphed steps: the same forecast as the dynamic engine and
the masked model, fixed sizes, no host syncs, and never a stale graph."""
import pytest
import torch
from test_sparse import randomised, with_static_gates

from dyna_stream.backbones import BACKBONES
from dyna_stream.model.dynapruner import DynaPruner
from dyna_stream.model.masks import ContentBudget, keep_count
from dyna_stream.sparse import SparseEngine
from dyna_stream.sparse.blocks import BlockEngine, receptive_radius, superblock_costs
from dyna_stream.sparse.graphs import GraphedSteps
from dyna_stream.sparse.pools import IndexedBufferPool
from dyna_stream.sparse.profiling import step_counts

from conftest import leveled

POINTS = [(0.0, 0.0), (0.3, 0.7), (0.7, 0.7), (0.9, 0.5), (0.5, 0.0)]


def inputs(height=48, width=64, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, 1, height, width, generator=generator),
            torch.randn(batch, 2, 1, height, width, generator=generator))


def partial_coverage(batch=2, height=48, width=64):
    coverage = torch.ones(batch, 1, height, width)
    coverage[0, :, :20, :30] = 0
    coverage[-1, :, :, 40:] = 0
    return coverage


def forecasts(runs, frames, fallback, **options):
    """Each run's forecast from the same seed (the random policy draws the same masks)."""
    out = []
    for run in runs:
        torch.manual_seed(5)
        with torch.no_grad():
            out.append(run(frames, fallback, **options).forecast)
    return out


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("policy", ["dyna", "random"])
@pytest.mark.parametrize("strategy", ["auto", "windows"])
def test_static_equals_dynamic_equals_masked(backbone, policy, strategy):
    model = randomised(backbone)
    runs = (model, SparseEngine(model, strategy=strategy), SparseEngine(model, strategy=strategy, shapes="static"))
    frames, fallback = inputs()
    extras = [{}, {"coverage": partial_coverage()}]
    if policy == "dyna":
        extras.append({"coverage": partial_coverage(), "content_budget": ContentBudget(0.45, 0.8)})
    for data_sparsity, model_sparsity in POINTS:
        for extra in extras:
            masked, dynamic, static = forecasts(runs, frames, fallback, data_sparsity=data_sparsity,
                                                model_sparsity=model_sparsity, policy=policy, **extra)
            assert (static - masked).abs().max() <= 1e-4 and (dynamic - masked).abs().max() <= 1e-4


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_static_plans_fix_the_sizes_and_mp_dense_policies_match(backbone):
    model = randomised(backbone)
    gates = with_static_gates(model)
    engine = SparseEngine(model, shapes="static")
    plan = engine.plan((48, 64), data_sparsity=0.7, model_sparsity=0.5, policy="dyna", coverage=True,
                       content_budget=False)
    tiles = (48 // model.tile_size) * (64 // model.tile_size)
    assert plan.tiles == keep_count(tiles, 0.7) and plan.dead_tiles
    assert plan.channels == {name: keep_count(units, 0.5) for name, units in model.backbone.groups.items()}
    mp = engine.plan((48, 64), data_sparsity=0.0, model_sparsity=0.0, policy="static", coverage=False,
                     content_budget=False)
    assert mp.tiles is None and mp.channels == {name: int(gate.sum()) for name, gate in gates.items()}
    frames, fallback = inputs(32, 32, batch=1)
    for policy in ("static", "dense"):
        masked, static = forecasts((model, engine), frames, fallback, policy=policy)
        assert (static - masked).abs().max() <= 1e-4


def test_static_step_makes_no_host_sync_where_the_dynamic_one_does():
    model, _ = leveled("simvp")              # norm levels too: choosing one must not read the device
    frames, fallback = inputs(batch=1)
    coverage = partial_coverage(batch=1)
    counts = {}
    for shapes in ("dynamic", "static"):
        engine = SparseEngine(model, shapes=shapes)
        counts[shapes] = step_counts(lambda: engine(frames, fallback, data_sparsity=0.7, model_sparsity=0.5,  # noqa: B023
                                                    coverage=coverage, content_budget=ContentBudget(0.5)),
                                     torch.device("cpu"))
    assert counts["static"].host_syncs == 0
    assert counts["dynamic"].host_syncs >= 3       # nonzero for the tiles and each gated group
    assert counts["static"].operators > 0


def test_static_sizes_do_not_follow_the_content():
    """Different windows at one point: the same tile count and channel counts (what a graph needs),
    dead tiles where coverage keeps fewer, and exact results throughout."""
    model = randomised("simvp")
    engine = SparseEngine(model, shapes="static")
    contexts = []
    engine._static_context = (lambda original: lambda *a: contexts.append(original(*a)) or contexts[-1])(
        engine._static_context)
    for seed, coverage in enumerate([None, partial_coverage(1), torch.zeros(1, 1, 48, 64)]):
        frames, fallback = inputs(batch=1, seed=seed)
        masked, static = forecasts((model, engine), frames, fallback, data_sparsity=0.5, model_sparsity=0.5,
                                   coverage=coverage)
        assert (static - masked).abs().max() <= 1e-4
    sizes = {(ctx.rows.numel(), tuple(k.numel() for k in ctx.kept.values())) for ctx in contexts}
    assert len(sizes) == 1
    full, partial, none = contexts
    assert full.live is None and none.live.sum() == 0 and 0 < partial.live.sum() < partial.rows.numel()


def test_indexed_pool_clears_the_previous_tiles_by_index():
    pool = IndexedBufferPool()
    like = torch.zeros(1)
    rows, cols = torch.tensor([0, 1]), torch.tensor([2, 0])
    buffer = pool.take(like, (8, 12), 2, 1, footprint=(rows, cols, (2, 3)), whole=False)
    buffer[:, 1:-1, 1:-1] = 1.0                     # a step writes its tiles (here: everything)
    pool.give_back(buffer, 1, (rows, cols, (2, 3)))
    again = pool.take(like, (8, 12), 2, 1, footprint=(torch.tensor([1]), torch.tensor([1]), (2, 3)), whole=False)
    assert again is buffer
    assert again[:, 1:5, 9:13].eq(0).all() and again[:, 5:9, 1:5].eq(0).all()   # the previous tiles: cleared
    assert again[:, 1:5, 1:5].eq(1).all()        # written outside its footprint: a borrower never does this


def test_threshold_gates_have_no_static_shape():
    model = DynaPruner(backbone="simvp", t_in=3, t_out=2, channels=1, gate_mode="threshold",
                       backbone_kwargs={"width": 4, "latent": 8, "hidden": 8, "blocks": 1})
    frames, fallback = inputs(32, 32, batch=1)
    with pytest.raises(ValueError, match="gate_mode 'threshold'"):
        SparseEngine(model, shapes="static")(frames, fallback, data_sparsity=0.5)
    with pytest.raises(ValueError, match="mask_failure"):
        SparseEngine(randomised("simvp"), shapes="static")(frames, fallback, data_sparsity=0.5, mask_failure=0.2)
    with pytest.raises(ValueError, match="shapes must be one of"):
        SparseEngine(model, shapes="fixed")


def test_graphed_steps_never_replay_a_stale_step_on_cpu():
    """Without CUDA the graphed steps run eagerly on their static buffers — the same keys and
    buffers: a changed grid, point, policy or budget gets its own entry, an old key is reused, the
    cache stays bounded, and every result equals a fresh dynamic engine's."""
    model, _ = leveled("simvp")
    graphed, dynamic = GraphedSteps(model, max_graphs=3), SparseEngine(model)
    assert not graphed.capture
    calls = [((48, 64), 0.7, 0.5, None), ((32, 64), 0.7, 0.5, None), ((48, 64), 0.5, 0.9, None),
             ((48, 64), 0.7, 0.5, ContentBudget(0.5)), ((48, 64), 0.7, 0.5, None), ((48, 64), 0.7, 0.5, None)]
    captures = []
    for seed, (size, sd, sw, budget) in enumerate(calls):
        frames, fallback = inputs(*size, batch=1, seed=seed)
        options = {"data_sparsity": sd, "model_sparsity": sw, "content_budget": budget}
        replayed = graphed(frames, fallback, **options).forecast
        assert (replayed - dynamic(frames, fallback, **options).forecast).abs().max() <= 1e-4
        captures.append(graphed.captures)
    assert captures == [1, 2, 3, 4, 5, 5]      # the 5th call's key was evicted (3 kept), then reused
    assert len(graphed.memory()) == 3
    first = graphed(*inputs(batch=1, seed=9), data_sparsity=0.7, model_sparsity=0.5)
    second = graphed(*inputs(batch=1, seed=10), data_sparsity=0.7, model_sparsity=0.5)
    assert not torch.equal(first.forecast, second.forecast)        # results are the caller's own copies
    with pytest.raises(ValueError, match="mask_failure"):
        graphed(*inputs(batch=1), data_sparsity=0.5, mask_failure=0.1)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@cuda
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_cuda_graphs_replay_the_dynamic_result(backbone):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    model = randomised(backbone, "cuda")
    graphed, dynamic = GraphedSteps(model), SparseEngine(model)
    assert graphed.capture
    for seed, (sd, sw) in enumerate(POINTS * 2):
        frames, fallback = (x.cuda() for x in inputs(batch=1, seed=seed))
        coverage = partial_coverage(batch=1).cuda()
        for extra in ({}, {"coverage": coverage}):
            replayed = graphed(frames, fallback, data_sparsity=sd, model_sparsity=sw, **extra).forecast
            expected = dynamic(frames, fallback, data_sparsity=sd, model_sparsity=sw, **extra).forecast
            assert (replayed - expected).abs().max() <= 1e-4
    assert graphed.captures == 2 * len(POINTS) and all(size > 0 for size in graphed.memory().values())
    frames, fallback = (x.cuda() for x in inputs(32, 64, batch=1))
    torch.cuda.set_sync_debug_mode("error")       # a replay that waited on the device would raise
    try:
        graphed(frames, fallback, data_sparsity=0.7, model_sparsity=0.7)
        graphed(frames, fallback, data_sparsity=0.7, model_sparsity=0.7)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert graphed.captures == 2 * len(POINTS) + 1


@pytest.mark.parametrize("backbone", ["simvp", "convlstm"])
@pytest.mark.parametrize("superblock", [None, 1, 2])
def test_block_strategy_equals_masked(backbone, superblock):
    """Kept superblocks gathered once with the receptive radius as halo, the masked backbone run on
    the batch of blocks: the forecast of the masked model over the whole grid."""
    model = randomised(backbone)
    engine = BlockEngine(model, superblock=superblock)
    frames, fallback = inputs(40, 56)
    for data_sparsity, model_sparsity in POINTS:
        for extra in ({}, {"coverage": partial_coverage(2, 40, 56)}):
            masked, blocks = forecasts((model, engine), frames, fallback, data_sparsity=data_sparsity,
                                       model_sparsity=model_sparsity, **extra)
            assert (blocks - masked).abs().max() <= 1e-4
    assert superblock is not None or engine.last_superblock == 0   # a small grid: blocks cost more than it


def test_block_halo_is_the_receptive_radius_and_is_needed(monkeypatch):
    model = randomised("simvp")
    radius = receptive_radius(model, (40, 56))
    convs = [b for b in model.backbone.blocks() if b.conv.kernel_size[0] > 1]
    assert radius >= len(convs)                       # every 3×3 conv reaches at least one pixel
    engine = BlockEngine(model, superblock=1)
    frames, fallback = inputs(40, 56)
    options = {"data_sparsity": 0.3, "model_sparsity": 0.3}
    exact = engine(frames, fallback, **options)
    monkeypatch.setattr(engine, "halo_tiles", lambda size: 1)
    short = engine(frames, fallback, **options)
    assert (short.forecast - exact.forecast).abs().max() > 1e-3      # a halo short of the radius is wrong
    assert short.accounting[0].macs < exact.accounting[0].macs      # and the halo is counted as work
    with pytest.raises(ValueError, match="finite receptive radius"):
        BlockEngine(randomised("tau"))(*inputs(32, 32, batch=1), data_sparsity=0.5)


def test_superblock_costs_pick_compact_regions():
    tiles = torch.zeros(16, 16)
    tiles[:2, :2] = 1                                     # one compact storm of 4 tiles
    costs = superblock_costs(tiles, halo=1)
    assert costs == {0: 256, 1: 4 * 9, 2: 16, 4: 36, 8: 100}
    tiles[::4, ::4] = 1                                   # scattered cells: blocks lose to the whole grid
    assert min(superblock_costs(tiles, halo=3), key=superblock_costs(tiles, halo=3).get) == 0

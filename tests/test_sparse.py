"""The sparse engine computes what the masked dense model computes, for every backbone."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dyna_stream.backbones import BACKBONES
from dyna_stream.config import load_config
from dyna_stream.data.normalise import Normaliser
from dyna_stream.model.checkpoint import Checkpoint
from dyna_stream.model.dynapruner import DynaPruner
from dyna_stream.model.masks import ContentBudget, keep_count
from dyna_stream.predictor import Predictor
from dyna_stream.sparse import SparseEngine
from dyna_stream.sparse import tiles as tile_ops
from dyna_stream.sparse.pools import BufferPool

from conftest import TINY_BACKBONES, TINY_COARSE, leveled, tiny_dyna

SPARSITIES = [0.0, 0.3, 0.5, 0.7, 0.9]


def randomised(backbone: str, device: str = "cpu") -> DynaPruner:
    """A model with random weights and BatchNorm statistics, so every path carries signal."""
    model = tiny_dyna(backbone)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval().to(device)


def assert_equivalent(model, frames, fallback, sd, sw, policy, strategy="windows"):
    """Same forecast as the masked dense model; with gathering everywhere, exactly its MAC count."""
    torch.manual_seed(1)
    with torch.no_grad():
        reference = model(frames, fallback, data_sparsity=sd, model_sparsity=sw, policy=policy)
    torch.manual_seed(1)  # the random policy draws the same masks
    result = SparseEngine(model, strategy=strategy)(frames, fallback, data_sparsity=sd, model_sparsity=sw,
                                                    policy=policy)
    assert (result.forecast - reference.forecast).abs().max() <= 1e-4
    executed, analytic = [a.macs for a in result.accounting], model.macs(reference).cpu().numpy()
    if strategy == "windows":
        np.testing.assert_allclose(executed, analytic, rtol=1e-6)
    else:
        assert (np.array(executed) >= analytic * (1 - 1e-6)).all()
    return reference, result


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("policy", ["dyna", "random"])
@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("strategy", ["windows", "canvas", "auto"])
def test_sparse_matches_masked_dense(backbone, policy, sparsity, strategy):
    model = randomised(backbone)
    frames, fallback = torch.randn(2, 3, 1, 48, 64), torch.randn(2, 2, 1, 48, 64)
    both, _ = assert_equivalent(model, frames, fallback, sparsity, sparsity, policy, strategy)
    assert_equivalent(model, frames, fallback, sparsity, 0.0, policy, strategy)
    assert_equivalent(model, frames, fallback, 0.0, sparsity, policy, strategy)
    if sparsity > 0:
        assert (both.masks.tiles == 0).any() and all((gate == 0).any() for gate in both.masks.gates.values())


@pytest.mark.parametrize("backbone", ["simvp", "tau"])
@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_a_latent_stride_of_two_stays_exact_with_tiles_half_the_size(backbone, sparsity):
    """SimVP/TAU with one downsampling stage (small grids): 4-pixel tiles at tile_latent 2."""
    torch.manual_seed(0)
    model = DynaPruner(backbone=backbone, t_in=3, t_out=2, channels=1, generator_hidden=4,
                       backbone_kwargs={**TINY_BACKBONES[backbone], "stride": 2}, coarse=TINY_COARSE)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    assert model.eval().tile_size == 4
    frames, fallback = torch.randn(2, 3, 1, 24, 32), torch.randn(2, 2, 1, 24, 32)
    for strategy in ("windows", "canvas", "auto"):
        assert_equivalent(model, frames, fallback, sparsity, sparsity, "dyna", strategy)


def test_a_latent_stride_other_than_two_or_four_is_refused():
    with pytest.raises(ValueError, match="latent stride is one of"):
        DynaPruner(backbone="simvp", t_in=3, t_out=2, channels=1, backbone_kwargs={"stride": 8})


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("strategy", ["windows", "auto"])
def test_engine_reused_across_steps_stays_exact(backbone, strategy):
    """Pixel buffers go back to the engine's pool after each step: later steps with other tiles and
    channels (and other sizes) still compute exactly what the masked dense model computes."""
    model = randomised(backbone)
    engine = SparseEngine(model, strategy=strategy)
    for step, sparsity in enumerate([0.9, 0.3, 0.7, 0.0, 0.5, 0.9]):
        height = 48 if step % 3 else 32
        frames, fallback = torch.randn(2, 3, 1, height, 64), torch.randn(2, 2, 1, height, 64)
        runs = []
        for run in (model, engine):          # the random policy draws the same masks from the same seed
            torch.manual_seed(step)
            with torch.no_grad():
                runs.append(run(frames, fallback, data_sparsity=sparsity, model_sparsity=sparsity, policy="random"))
        assert (runs[1].forecast - runs[0].forecast).abs().max() <= 1e-4


def test_engine_shared_by_threads_gives_each_call_its_own_result():
    """Calls from several threads (a node's worker and a controller's probe) take turns: each gets
    what it would get alone, although they share the buffer pool and the model's norm level."""
    model, _ = leveled("simvp")                 # every call loads its own norm level into the model
    engine = SparseEngine(model, strategy="windows")
    frames, fallback = torch.randn(1, 3, 1, 48, 64), torch.randn(1, 2, 1, 48, 64)
    points = [0.0, 0.5, 0.9, 0.5] * 4
    alone = {s: engine(frames, fallback, data_sparsity=s, model_sparsity=s).forecast for s in set(points)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        shared = list(pool.map(lambda s: engine(frames, fallback, data_sparsity=s, model_sparsity=s).forecast, points))
    for sparsity, forecast in zip(points, shared):
        assert torch.equal(forecast, alone[sparsity])


def with_static_gates(model: DynaPruner) -> dict[str, torch.Tensor]:
    """Give ``model`` random fixed (MP) gates, each group keeping its first unit and about half; returns them."""
    gates = {name: (torch.rand(size) < 0.5).float().index_fill_(0, torch.tensor([0]), 1.0)
             for name, size in model.backbone.groups.items()}
    model.set_static_gates(gates)
    return gates


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_static_and_dense_policies_match_too(backbone):
    model = randomised(backbone)
    with_static_gates(model)
    frames, fallback = torch.randn(1, 3, 1, 32, 32), torch.randn(1, 2, 1, 32, 32)
    for policy in ("static", "dense"):
        assert_equivalent(model, frames, fallback, 0.0, 0.0, policy)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_executed_macs_shrink_with_the_masks(backbone):
    model = randomised(backbone)
    frames, fallback = torch.randn(1, 3, 1, 64, 64), torch.randn(1, 2, 1, 64, 64)
    engine = SparseEngine(model, strategy="windows")
    macs = [engine(frames, fallback, data_sparsity=s, model_sparsity=s).accounting[0].macs for s in SPARSITIES]
    assert macs == sorted(macs, reverse=True) and macs[-1] < macs[0] * 0.05
    sparse = engine(frames, fallback, data_sparsity=0.7, model_sparsity=0.7).accounting[0]
    assert sparse.gathered_bytes > 0 and sparse.scattered_bytes > 0


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_predictor_engines_agree_on_odd_grids(backbone):
    model = randomised(backbone)
    checkpoint = Checkpoint(model, load_config(None), Normaliser((-20.0,), (10.0,), "dBZ", -32.0, 60.0),
                            "radar-fmi", 3, 2, -32.0)
    frames = np.random.default_rng(0).uniform(-32, 50, size=(3, 1, 37, 50)).astype(np.float32)
    for sparsity in SPARSITIES:
        results = [Predictor(checkpoint, data_sparsity=sparsity, model_sparsity=sparsity, engine=engine)(frames)
                   for engine in ("masked", "sparse")]
        assert results[0].forecast.shape == (2, 1, 37, 50)
        # physical units: 1e-4 in normalised units × std 10 dBZ
        np.testing.assert_allclose(results[1].forecast, results[0].forecast, atol=1e-3)
        assert results[1].macs >= results[0].macs * (1 - 1e-6)   # canvas layers execute their whole canvas


def padded(canvas: torch.Tensor, halo: int, tile_mask=None) -> torch.Tensor:
    buffer = tile_ops.zero_buffer(canvas, canvas.shape[-2:], canvas.shape[1], halo)
    tile_ops.write_canvas(tile_ops.interior(buffer, halo), canvas, tile_mask)
    return buffer


def test_gather_scatter_round_trip_and_halo_contents():
    canvas = torch.arange(2 * 8 * 12, dtype=torch.float32).reshape(1, 2, 8, 12)
    rows, cols = torch.tensor([0, 1]), torch.tensor([2, 0])
    tiles = tile_ops.take_tiles(canvas, rows, cols, (2, 3))
    assert tiles.shape == (2, 2, 4, 4)
    back = tile_ops.zero_buffer(canvas, (8, 12), 2, 0)
    tile_ops.write_tiles(back, tiles, rows, cols, (2, 3))
    assert torch.equal(back[:, 0:4, 8:12], canvas[0, :, 0:4, 8:12]) and back[:, 0:4, 0:8].eq(0).all()
    active = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    windows = tile_ops.gather_windows(padded(canvas, 1, active), rows, cols, tile=4, window=6)
    assert windows.shape == (2, 2, 6, 6)
    assert windows.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(windows[0, :, 1:5, 1:5], canvas[0, :, 0:4, 8:12])
    assert windows[0, :, 0, :].eq(0).all() and windows[0, :, :, -1].eq(0).all()     # beyond the image
    assert windows[0, :, 1:5, 0].eq(0).all()                                        # pruned neighbour (0, 1)
    assert torch.equal(windows[1, :, 0, 1:5], canvas[0, :, 3, 0:4])                  # halo from active tile above
    pool, written = BufferPool(), torch.zeros(2, 3, dtype=torch.bool)
    written[rows, cols] = True
    buffer = pool.take(tiles, (8, 12), 2, 1, footprint=written, whole=False)
    tile_ops.write_tiles(tile_ops.interior(buffer, 1), tiles, rows, cols, (2, 3))    # onto a zero-bordered buffer
    assert torch.equal(tile_ops.gather_windows(buffer, rows, cols, tile=4, window=6)[0], windows[0])
    pool.give_back(buffer, 1, written)
    now = torch.tensor([[True, True, False], [False, False, False]])      # (0, 2) and (1, 0) went stale
    again = pool.take(tiles, (8, 12), 2, 1, footprint=now, whole=False)
    assert again is buffer and again.eq(0).all()         # stale tiles cleared: zero again
    assert pool.take(tiles, (8, 12), 2, 1, footprint=now, whole=False) is not buffer     # lent once at a time
    tile_ops.write_tiles(tile_ops.interior(again, 1), tiles, rows, cols, (2, 3))
    pool.give_back(again, 1, written)
    kept = pool.take(tiles, (8, 12), 2, 1, footprint=now, whole=True)   # its borrower overwrites it: no clearing
    assert kept is buffer and torch.equal(tile_ops.interior(kept, 1)[:, 0:4, 8:12], canvas[0, :, 0:4, 8:12])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_sparse_matches_masked_dense_on_cuda(backbone, sparsity):
    model = randomised(backbone, "cuda")
    frames, fallback = torch.randn(1, 3, 1, 48, 64, device="cuda"), torch.randn(1, 2, 1, 48, 64, device="cuda")
    torch.backends.cudnn.allow_tf32 = False
    assert_equivalent(model, frames, fallback, sparsity, sparsity, "dyna")


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_onnx_export_matches_torch(tmp_path, backbone):
    pytest.importorskip("onnxruntime")
    from dyna_stream.sparse.onnx_export import export_onnx, onnx_parity

    model = randomised(backbone)
    path = export_onnx(model, tmp_path / "dense.onnx", height=48, width=64)
    frames, fallback = torch.randn(1, 3, 1, 48, 64), torch.randn(1, 2, 1, 48, 64)
    assert onnx_parity(model, path, frames, fallback) <= 1e-4


@pytest.mark.parametrize("kernel, stride, dilation", [(3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1), (3, 1, 2)])
def test_window_gather_reproduces_masked_convolution(kernel, stride, dilation):
    """Any k, s, d: convolving gathered windows (padding 0) equals the padded dense convolution of
    the masked canvas, on the active tiles."""
    torch.manual_seed(0)
    grid, tile_out = (3, 4), 4
    size = (grid[0] * tile_out * stride, grid[1] * tile_out * stride)
    active = (torch.rand(grid) < 0.5).float()
    active[0, 0] = 1.0
    canvas = torch.randn(1, 3, *size) * active.repeat_interleave(size[0] // grid[0], 0).repeat_interleave(
        size[1] // grid[1], 1)
    weight = torch.randn(2, 3, kernel, kernel)
    padding = dilation * (kernel - 1) // 2
    dense = F.conv2d(canvas, weight, stride=stride, padding=padding, dilation=dilation)[0]
    rows, cols = torch.nonzero(active, as_tuple=True)
    windows = tile_ops.gather_windows(padded(canvas, padding), rows, cols, tile=tile_out * stride,
                                      window=tile_ops.window_size(tile_out, kernel, stride, dilation))
    tiles = F.conv2d(windows, weight, stride=stride, dilation=dilation)
    expected = tile_ops.take_tiles(dense[None], rows, cols, grid)
    torch.testing.assert_close(tiles, expected, rtol=1e-5, atol=1e-4)


def test_bundled_model_sparse_equals_masked_on_real_radar():
    """Learned masks of the shipped model on the shipped real sample: both engines agree."""
    from dyna_stream.assets import BUNDLED_MODEL, BUNDLED_SAMPLE
    from dyna_stream.data.registry import load_path
    from dyna_stream.model.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(BUNDLED_MODEL)
    frames = load_path(BUNDLED_SAMPLE).values[-checkpoint.t_in:]
    for sparsity in SPARSITIES:
        masked, *others = (Predictor(checkpoint, data_sparsity=sparsity, model_sparsity=sparsity, engine=engine,
                                     area_guard=False)(frames)
                           for engine in ("masked", "sparse", "graphed", "blocks"))
        for other in others:
            assert np.abs(other.forecast - masked.forecast).max() <= 1e-3     # dBZ; 1e-4 normalised × std
            assert np.array_equal(other.kept_tiles, masked.kept_tiles)
        assert 0 < (masked.kept_tiles == 0).mean() or sparsity == 0


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("sparsity", [0.0, 0.7])
def test_sparse_matches_masked_where_radar_coverage_ends(backbone, sparsity):
    """Partial coverage: both engines agree, no kept tile lies outside coverage, uncovered tiles cost
    nothing but the coarse path; a window without coverage keeps no tile and returns the coarse
    forecast (fallback + coarse path) exactly."""
    model = randomised(backbone)
    frames, fallback = torch.randn(2, 3, 1, 48, 64), torch.randn(2, 2, 1, 48, 64)
    coverage = torch.ones(2, 1, 48, 64)
    coverage[0, :, :, 40:] = 0
    coverage[1] = 0
    with torch.no_grad():
        reference = model(frames, fallback, data_sparsity=sparsity, model_sparsity=sparsity, coverage=coverage)
    result = SparseEngine(model)(frames, fallback, data_sparsity=sparsity, model_sparsity=sparsity,
                                 coverage=coverage)
    assert (result.forecast - reference.forecast).abs().max() <= 1e-4
    tiles = result.masks.tiles
    outside = F.max_pool2d(coverage, model.tile_size) == 0
    assert tiles[0][outside[0]].sum() == 0 and tiles[0].sum() > 0
    assert tiles[1].sum() == 0 and result.accounting[1].macs == model.coarse_macs(48, 64) > 0
    with torch.no_grad():
        coarse = model.base(frames, fallback)
    assert (coarse[1] - fallback[1]).abs().max() > 0.1              # the coarse path does change it
    assert torch.equal(result.forecast[1], coarse[1]) and torch.equal(reference.forecast[1], coarse[1])
    gathered = [SparseEngine(model, strategy="windows")(frames, fallback, data_sparsity=sparsity,
                                                        model_sparsity=sparsity, coverage=c).accounting[0].macs
                for c in (coverage, None)]
    assert gathered[0] < gathered[1]          # gathering: the uncovered tiles' windows are never computed


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("cap", [0.0, 0.5])
def test_sparse_matches_masked_under_the_threshold_budget(backbone, cap):
    """Per-sample kept shares decided by S's threshold: both engines still agree, MACs follow the
    share kept, and no sample keeps more than top-k at the cap."""
    model = randomised(backbone)
    frames, fallback = torch.randn(2, 3, 1, 48, 64), torch.randn(2, 2, 1, 48, 64)
    with torch.no_grad():
        scores = F.avg_pool2d(model.select_masks(frames, fallback)[0], model.tile_size).flatten(1)
    budget = ContentBudget(float(scores.median()), max_sparsity=0.9)
    options = {"data_sparsity": cap, "model_sparsity": 0.5, "content_budget": budget}
    with torch.no_grad():
        reference = model(frames, fallback, **options)
    result = SparseEngine(model, strategy="windows")(frames, fallback, **options)   # gathering: exact MACs
    assert (result.forecast - reference.forecast).abs().max() <= 1e-4
    kept = result.masks.tiles.flatten(1).sum(1)
    above = (scores > budget.threshold).sum(1)
    total = scores.shape[1]
    expected = above.clamp(keep_count(total, 0.9), keep_count(total, cap))
    assert torch.equal(kept, expected.to(kept.dtype))
    np.testing.assert_allclose([a.macs for a in result.accounting], model.macs(reference).numpy(), rtol=1e-6)

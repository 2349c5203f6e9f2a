"""The MP baseline: L1-norm filter pruning of a dense model to a Dyna-Pruner's MAC budget, fine-tuned."""
from __future__ import annotations

import logging
from pathlib import Path

from ..data.registry import get_dataset
from ..evaluate.runner import Operating, model_forecasts
from ..model.checkpoint import load_checkpoint
from ..model.l1_pruning import l1_gates_for_budget, static_macs
from .trainer import prepare_data, train

log = logging.getLogger(__name__)


def prune_and_finetune(dense_path: str | Path, reference_path: str | Path, *, sparsity: float, steps: int,
                       lr: float, out_dir: str | Path, data_root: str | None = None, progress: bool = True) -> Path:
    """Prune ``dense_path`` to the backbone MACs of the reference's kept tiles and channels at
    sd = sw = ``sparsity`` (first validation window, padded data grid), then fine-tune."""
    dense, reference = load_checkpoint(dense_path), load_checkpoint(reference_path)
    if dense.dataset != reference.dataset:
        raise ValueError(f"dense model is for {dense.dataset}, reference for {reference.dataset}")
    overrides = {"policy": "static", "steps": steps, "lr": lr, "warmup_steps": min(20, steps),
                 "out_dir": str(out_dir)}
    config = dense.config.model_copy(update={
        "train": dense.config.train.model_copy(update=overrides),
        "data": dense.config.data.model_copy(update={"root": data_root or dense.config.data.root})})
    data = prepare_data(config, dense.model.tile_size)
    operating = Operating("dyna", sparsity, sparsity, engine="masked")   # kept MACs, independent of the engine
    target = next(model_forecasts(reference, data.val, operating, indices=[0])).macs
    height, width = data.val[0]["frames"].shape[-2:]
    gates = l1_gates_for_budget(dense.model, target, height, width)
    dense.model.set_static_gates(gates)
    kept = {name: int(g.sum()) for name, g in gates.items()}
    log.info("MP: budget %.3f GMACs (%s sd=sw=%g); kept channels %s → %.3f GMACs", target / 1e9,
             get_dataset(reference.dataset).name, sparsity, kept,
             static_macs(dense.model, gates, height, width) / 1e9)
    return train(config, progress=progress, data=data, init_model=dense.model)

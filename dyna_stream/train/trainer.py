"""End-to-end training: AdamW, warm-up + cosine schedule, any-sparsity sampling, periodic
validation, resumable checkpoints."""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import RunConfig
from ..data.normalise import Normaliser
from ..data.registry import get_dataset, load_split
from ..data.series import Series
from ..data.windows import WindowDataset, random_crop_flip
from ..evaluate.runner import Operating, model_forecasts, score
from ..model.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from ..model.dynapruner import DynaPruner
from ..model.loss import LossWeights, dyna_loss

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Windows of the train and validation splits, normalised with the training statistics."""

    dataset: str
    normaliser: Normaliser
    train: WindowDataset
    val: WindowDataset


def prepare_data(config: RunConfig, multiple: int, *, train_series: Series | None = None,
                 val_series: Series | None = None) -> TrainingData:
    """Load splits (or take the given series), fit normalisation on train, build windows."""
    spec = get_dataset(config.data.name)
    train_series = train_series if train_series is not None else load_split(spec.name, "train", config.data.root)
    val_series = val_series if val_series is not None else load_split(spec.name, "val", config.data.root)
    normaliser = Normaliser.fit(train_series)
    make = lambda s: WindowDataset(s, t_in=spec.t_in, t_out=spec.t_out, normaliser=normaliser,  # noqa: E731
                                   fallback=spec.fallback, multiple=multiple)
    return TrainingData(spec.name, normaliser, make(train_series), make(val_series))


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _batch(data: WindowDataset, size: int, crop: int, multiple: int, generator: torch.Generator) -> dict:
    indices = torch.randint(0, len(data), (size,), generator=generator).tolist()
    items = [random_crop_flip(data[i], crop, multiple, generator) for i in indices]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def validate(checkpoint: Checkpoint, data: TrainingData, operating: Operating) -> dict:
    spec = get_dataset(data.dataset)
    return score(data.val, model_forecasts(checkpoint, data.val, operating), thresholds=spec.csi_thresholds,
                 data_range=data.normaliser.data_range)


def train(config: RunConfig, *, resume: str | Path | None = None, progress: bool = True,
          data: TrainingData | None = None, init_model: DynaPruner | None = None,
          stop_at: int | None = None) -> Path:
    """Train per ``config``; returns the path of the final checkpoint (``<out_dir>/model.pt``).

    ``<out_dir>/last.pt`` is rewritten at every validation and resumes an interrupted run;
    ``<out_dir>/best.pt`` holds the weights with the lowest validation MSE so far. model.pt takes
    the best (``train.select: best``, early stopping) or the last weights.
    ``init_model`` starts from given weights (fine-tuning, e.g. of an L1-pruned model).
    ``stop_at`` ends a time-boxed session after that step (at a validation step, so last.pt holds
    it) without writing model.pt; ``resume`` continues it on the same schedule.
    """
    cfg = config.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    generator = _seed_everything(cfg.seed)
    spec = get_dataset(config.data.name)
    probe = build_model(config.model, t_in=spec.t_in, t_out=spec.t_out, channels=1)
    data = data or prepare_data(config, probe.tile_size)
    channels = data.train.series.shape[1]
    model = init_model or build_model(config.model, t_in=spec.t_in, t_out=spec.t_out, channels=channels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg.warmup_steps, cfg.steps))
    start, history = 0, []
    if resume is not None:
        state = load_checkpoint(resume)
        model.load_state_dict(state.model.state_dict())
        optimizer.load_state_dict(state.training_state["optimizer"])
        scheduler.load_state_dict(state.training_state["scheduler"])
        generator.set_state(state.training_state["generator"])
        start, history = state.step, list(state.metrics.get("history", []))
        log.info("resumed %s at step %d", resume, start)
    out_dir = Path(cfg.out_dir)
    weights = LossWeights(cfg.lambda_data, cfg.lambda_model, cfg.lambda_budget)
    val_point = (Operating("dyna", cfg.validation_sparsity, cfg.validation_sparsity) if cfg.policy == "dyna"
                 else Operating(cfg.policy))
    started = time.perf_counter() - sum(h.get("seconds", 0.0) for h in history[-1:])

    def checkpoint(step: int, metrics: dict) -> Checkpoint:
        return Checkpoint(model, config, data.normaliser, data.dataset, spec.t_in, spec.t_out,
                          data.train.series.fill_value, metrics, step,
                          training_state={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                          "generator": generator.get_state()})

    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc="train")
    for step in bar:
        model.train()
        batch = _batch(data.train, cfg.batch_size, cfg.crop, model.tile_size, generator)
        sd, sw = ((float(torch.empty(1).uniform_(*cfg.sparsity_range, generator=generator)) for _ in range(2))
                  if cfg.policy == "dyna" else (0.0, 0.0))
        prediction = model(batch["frames"], batch["fallback"], data_sparsity=sd, model_sparsity=sw,
                           policy=cfg.policy)
        loss, parts = dyna_loss(prediction, batch["target"], batch["valid"], weights=weights,
                                model_sparsity=sw, gate_mode=config.model.gate_mode)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        bar.set_postfix(loss=f"{parts['task']:.4f}")
        if (step + 1) % cfg.validate_every == 0 or step + 1 == cfg.steps:
            val = validate(checkpoint(step + 1, {}), data, val_point)
            history.append({"step": step + 1, "seconds": time.perf_counter() - started, "train_task": parts["task"],
                            "val_mse": val["mse_mean"], "val_mae": val["mae_mean"]})
            log.info("step %d  train %.4f  val MSE %.3f %s²  MAE %.3f", step + 1, parts["task"], val["mse_mean"],
                     data.normaliser.units, val["mae_mean"])
            if val["mse_mean"] <= min(h["val_mse"] for h in history):
                best = checkpoint(step + 1, {"history": history, "val": val})
                best.training_state = {}
                save_checkpoint(out_dir / "best.pt", best)
            save_checkpoint(out_dir / "last.pt", checkpoint(step + 1, {"history": history, "val": val}))
            if stop_at is not None and step + 1 >= stop_at:
                return out_dir / "last.pt"
    selected = cfg.steps
    if cfg.select == "best" and history:
        best_entry = min(history, key=lambda h: h["val_mse"])
        model.load_state_dict(load_checkpoint(out_dir / "best.pt").model.state_dict())
        selected = best_entry["step"]
    final = checkpoint(selected, {"history": history, "selected_step": selected,
                                  "train_seconds": history[-1]["seconds"] if history else 0.0})
    final.training_state = {}
    save_checkpoint(out_dir / "model.pt", final)
    return out_dir / "model.pt"

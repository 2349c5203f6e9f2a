"""End-to-end training: AdamW, warm-up + cosine schedule, any-sparsity sampling, periodic
validation, resumable checkpoints."""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..config import RunConfig, TrainConfig
from ..data.normalise import Normaliser
from ..data.patches import patch_samples
from ..data.registry import dataset_for, get_dataset, load_parts
from ..data.series import Series
from ..data.windows import ConcatWindows, WindowDataset, random_crop_flip, window_set
from ..errors import ConfigError
from ..evaluate.default_point import choose_default_point
from ..evaluate.runner import Operating, model_forecasts, score
from ..model.checkpoint import Checkpoint, build_model, fallback_name, load_checkpoint, save_checkpoint
from ..model.dynapruner import DynaPruner, Prediction
from ..model.loss import LossWeights, TaskObjective, dyna_loss
from ..predictor import resolve_device
from .calibration import calibrate_norm_levels
from .distributed import SINGLE_PROCESS, Distributed, from_environment
from .sample_pruning import Samples, make_pruner
from .teacher import Distillation, start_from

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Windows of the train and validation splits, normalised with the training statistics."""

    dataset: str
    normaliser: Normaliser
    train: WindowDataset | ConcatWindows
    val: WindowDataset | ConcatWindows


def prepare_data(config: RunConfig, multiple: int, *, train_series: Series | list[Series] | None = None,
                 val_series: Series | list[Series] | None = None) -> TrainingData:
    """Load splits (or take the given series), fit normalisation on train, build windows (one
    :class:`WindowDataset` per series; several become a :class:`ConcatWindows`)."""
    spec = dataset_for(config.data)
    train_parts = _as_parts(train_series) or load_parts(spec.name, "train", config.data.root)
    val_parts = _as_parts(val_series) or load_parts(spec.name, "val", config.data.root)
    normaliser = Normaliser.fit(train_parts)
    make = lambda parts: window_set(parts, t_in=spec.t_in, t_out=spec.t_out, normaliser=normaliser,  # noqa: E731
                                    fallback=fallback_name(config.model, spec), multiple=multiple,
                                    periods=spec.periods,
                                    seasonal_inputs=config.model.seasonal)
    return TrainingData(spec.name, normaliser, make(train_parts), make(val_parts))


def _as_parts(series: Series | list[Series] | None) -> list[Series] | None:
    return None if series is None else list(series) if isinstance(series, list | tuple) else [series]


def training_samples(config: TrainConfig, windows: WindowDataset | ConcatWindows) -> Samples:
    """What the training loops draw from and sample pruning scores (``train.sample_unit``): the
    windows themselves, or their patches of ``train.crop`` pixels at ``train.patch_stride`` (default:
    half the crop, in whole tiles)."""
    if config.sample_unit == "window":
        return windows
    tile = windows.multiple
    stride = config.patch_stride or max(tile, config.crop // 2 // tile * tile)
    return patch_samples(windows, crop=config.crop, stride=stride)


def task_objective(config: TrainConfig, normaliser: Normaliser) -> TaskObjective:
    """``train.objective`` and ``train.intensity_weights`` (physical thresholds, channel 0's
    normalisation) as the loss's :class:`TaskObjective`."""
    mean, std = normaliser.mean[0], normaliser.std[0]
    return TaskObjective(mae=config.objective == "mse+mae",
                         thresholds=tuple((threshold - mean) / std for threshold, _ in config.intensity_weights),
                         weights=tuple(weight for _, weight in config.intensity_weights))


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


def _batch(data: Samples, size: int, crop: int, multiple: int, generator: torch.Generator) -> dict:
    indices = torch.randint(0, len(data), (size,), generator=generator).tolist()
    return _batch_of(data, indices, crop, multiple, generator)


def _batch_of(data: Samples, indices, crop: int, multiple: int,
              generator: torch.Generator) -> dict:
    items = [random_crop_flip(data[int(i)], crop, multiple, generator) for i in indices]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def validation_point(config: RunConfig) -> Operating:
    """Where a run is validated under the dyna policy: sd = train.validation_sparsity, sw =
    train.validation_model_sparsity (default: the same)."""
    cfg = config.train
    if cfg.policy != "dyna":
        return Operating(cfg.policy)
    sw = cfg.validation_sparsity if cfg.validation_model_sparsity is None else cfg.validation_model_sparsity
    return Operating("dyna", cfg.validation_sparsity, sw)


def validate(checkpoint: Checkpoint, data: TrainingData, operating: Operating) -> dict:
    spec = get_dataset(data.dataset)
    return score(data.val, model_forecasts(checkpoint, data.val, operating), thresholds=spec.csi_thresholds,
                 data_range=data.normaliser.data_range)


class _Session:
    """Model, optimiser, schedule, history and checkpoints of one training run; the step-based
    and the epoch-based loops drive it."""

    def __init__(self, config: RunConfig, data: TrainingData, model: DynaPruner, generator: torch.Generator,
                 lr_factor, distributed: Distributed = SINGLE_PROCESS,
                 distillation: Distillation | None = None) -> None:
        cfg = self.cfg = config.train
        self.distillation = distillation
        self.config, self.data, self.model, self.generator = config, data, model, generator
        self.distributed, self.forward = distributed, distributed.wrap(model)
        self.spec = dataset_for(config.data)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.averaged = None if cfg.ema_decay is None else AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.history: list[dict] = []
        self.out_dir = Path(cfg.out_dir)
        self.weights = LossWeights(cfg.lambda_data, cfg.lambda_model, cfg.lambda_budget)
        self.objective = task_objective(cfg, data.normaliser)
        self.device = next(model.parameters()).device
        self.val_point = replace(validation_point(config), device=str(self.device))
        self.started = time.perf_counter()

    @property
    def kept(self) -> DynaPruner:
        """The weights that are validated, selected and saved: the moving average (``train.ema_decay``)
        or the trained weights themselves."""
        return self.model if self.averaged is None else self.averaged.module

    def resume(self, path: str | Path) -> int:
        state = load_checkpoint(path)
        saved = state.model.state_dict()          # the average where the run kept one (see checkpoint())
        self.model.load_state_dict(state.training_state.get("model", saved))
        if self.averaged is not None:
            self.averaged.module.load_state_dict(saved)
            self.averaged.n_averaged.fill_(state.step)
        self.optimizer.load_state_dict(state.training_state["optimizer"])
        self.scheduler.load_state_dict(state.training_state["scheduler"])
        self.generator.set_state(state.training_state["generator"])
        self.history = list(state.metrics.get("history", []))
        self.started = time.perf_counter() - sum(h.get("seconds", 0.0) for h in self.history[-1:])
        log.info("resumed %s at step %d", path, state.step)
        return state.step

    def checkpoint(self, step: int, metrics: dict) -> Checkpoint:
        data = self.data
        training_state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                          "generator": self.generator.get_state()}
        if self.averaged is not None:      # the checkpoint's model is the average; training resumes from these
            training_state["model"] = self.model.state_dict()
        return Checkpoint(self.kept, self.config, data.normaliser, data.dataset, self.spec.t_in, self.spec.t_out,
                          data.train.fill_value, metrics, step, pixel_km=self.spec.pixel_km, periods=self.spec.periods,
                          step_minutes=self.spec.step_minutes, training_state=training_state)

    def optimise(self, batch: dict, sample_weight: torch.Tensor | None = None) -> dict:
        """One optimiser step on ``batch`` (any-sparsity draw under the dyna policy)."""
        cfg, model = self.cfg, self.model
        model.train()
        batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        if sample_weight is not None:
            sample_weight = sample_weight.to(self.device, non_blocking=True)
        ranges = (cfg.sparsity_range, cfg.model_sparsity_range or cfg.sparsity_range)
        sd, sw = ((float(torch.empty(1).uniform_(*r, generator=self.generator)) for r in ranges)
                  if cfg.policy == "dyna" else (0.0, 0.0))
        prediction = self.forward(batch["frames"], batch["fallback"], coverage=batch["coverage"], data_sparsity=sd,
                                  model_sparsity=sw,
                                  policy=cfg.policy)

        def loss_of(predicted: Prediction, model_sparsity: float) -> tuple[torch.Tensor, dict]:
            return dyna_loss(predicted, batch["target"], batch["valid"], weights=self.weights,
                             model_sparsity=model_sparsity, gate_mode=self.config.model.gate_mode,
                             sample_weight=sample_weight, objective=self.objective)

        loss, parts = loss_of(prediction, sw)
        dense = None
        if cfg.sandwich:
            dense = self.forward(batch["frames"], batch["fallback"], coverage=batch["coverage"], policy="dyna")
            dense_loss, dense_parts = loss_of(dense, 0.0)
            loss, parts["dense_task"] = loss + dense_loss, dense_parts["task"]
        if self.distillation is not None:
            distill = self.distillation.loss(prediction.forecast, batch, self.objective, dense=dense)
            loss, parts["distill"] = loss + distill, distill.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.averaged is not None:
            self.averaged.update_parameters(model)
        return parts

    def validate(self, step: int, parts: dict, **extra) -> dict | None:
        """Score the validation split, append to the history, write last.pt (and best.pt); on
        rank 0 only (the other ranks return None)."""
        if not self.distributed.main:
            return None
        data = self.data
        val = validate(self.checkpoint(step, {}), data, self.val_point)
        self.history.append({"step": step, "seconds": time.perf_counter() - self.started, "train_task": parts["task"],
                             "val_mse": val["mse_mean"], "val_mae": val["mae_mean"], **extra})
        log.info("step %d  train %.4f  val MSE %.3f %s²  MAE %.3f", step, parts["task"], val["mse_mean"],
                 data.normaliser.units, val["mae_mean"])
        if val["mse_mean"] <= min(h["val_mse"] for h in self.history):
            best = self.checkpoint(step, {"history": self.history, "val": val})
            best.training_state = {}
            save_checkpoint(self.out_dir / "best.pt", best)
        save_checkpoint(self.out_dir / "last.pt", self.checkpoint(step, {"history": self.history, "val": val}))
        return val

    def finish(self, last_step: int, **metrics) -> Path:
        """model.pt: the best (train.select: best) or the last weights, with BatchNorm levels when
        calibrated and the default operating point chosen on validation (written by rank 0; the
        other ranks wait for it)."""
        if not self.distributed.main:
            self.distributed.barrier()
            return self.out_dir / "model.pt"
        selected = last_step
        if self.cfg.select == "best" and self.history:
            best_entry = min(self.history, key=lambda h: h["val_mse"])
            self.kept.load_state_dict(load_checkpoint(self.out_dir / "best.pt").model.state_dict())
            selected = best_entry["step"]
        if self.cfg.policy == "dyna" and self.cfg.calibrate_norm:
            started = time.perf_counter()
            metrics["norm_calibration"] = calibrate_norm_levels(self.kept, self.data.train, self.data.val,
                                                                validation_sparsity=self.val_point.data_sparsity)
            metrics["norm_calibration_seconds"] = time.perf_counter() - started
        final = self.checkpoint(selected, {"history": self.history, "selected_step": selected,
                                           "train_seconds": self.history[-1]["seconds"] if self.history else 0.0,
                                           "world_size": self.distributed.world_size, **metrics})
        final.training_state = {}
        if self.cfg.policy == "dyna" and self.cfg.default_point_tolerance is not None:
            final.default_point = choose_default_point(final, self.data.val, tolerance=self.cfg.default_point_tolerance,
                                                       device=self.val_point.device)
        save_checkpoint(self.out_dir / "model.pt", final)
        self.distributed.barrier()
        return self.out_dir / "model.pt"


def train(config: RunConfig, *, resume: str | Path | None = None, progress: bool = True,
          data: TrainingData | None = None, init_model: DynaPruner | None = None,
          stop_at: int | None = None) -> Path:
    """Train per ``config``; returns the path of the final checkpoint (``<out_dir>/model.pt``).

    ``<out_dir>/last.pt`` is rewritten at every validation and resumes an interrupted run;
    ``<out_dir>/best.pt`` holds the weights with the lowest validation MSE so far. model.pt takes
    the best (``train.select: best``, early stopping) or the last weights.
    ``init_model`` starts from given weights (fine-tuning, e.g. of an L1-pruned model); ``train.init_from``
    from a checkpoint's, and ``train.distill_weight`` distils its dense forecast (:mod:`.teacher`).
    ``stop_at`` ends a time-boxed session after that step (at a validation step, so last.pt holds
    it) without writing model.pt; ``resume`` continues it on the same schedule (step-based runs).
    With ``train.epochs`` set, training runs epoch by epoch over the windows the configured
    sample pruning selects (:mod:`dyna_stream.train.sample_pruning`).
    """
    cfg = config.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    distributed = from_environment(cuda=device.type == "cuda")
    device = distributed.device(device)
    generator = _seed_everything(cfg.seed)
    spec = dataset_for(config.data)
    probe = build_model(config.model, t_in=spec.t_in, t_out=spec.t_out, channels=1, periods=spec.periods)
    data = data or prepare_data(config, probe.tile_size)
    channels = data.train.channels
    model = (init_model or build_model(config.model, t_in=spec.t_in, t_out=spec.t_out, channels=channels,
                                       periods=spec.periods)).to(device)
    teacher = None if cfg.init_from is None else start_from(model, cfg.init_from, dataset=spec.name)
    distillation = Distillation(teacher, cfg.distill_weight).to(device) if cfg.distill_weight > 0 else None
    if cfg.epochs is not None:
        if resume is not None or stop_at is not None:
            raise ConfigError("resume and stop_at work with step-based training (train.epochs: null)")
        return _train_epochs(config, data, model, generator, progress, distributed, distillation)
    if distributed.active:
        generator.manual_seed(distributed.seed(cfg.seed))         # each rank its own batches
    session = _Session(config, data, model, generator, lambda s: _lr_factor(s, cfg.warmup_steps, cfg.steps),
                       distributed, distillation)
    pool = training_samples(cfg, data.train)
    start = session.resume(resume) if resume is not None else 0
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress or not distributed.main,
               desc="train")
    for step in bar:
        parts = session.optimise(_batch(pool, cfg.batch_size, cfg.crop, model.tile_size, generator))
        bar.set_postfix(loss=f"{parts['task']:.4f}")
        if (step + 1) % cfg.validate_every == 0 or step + 1 == cfg.steps:
            session.validate(step + 1, parts)
            if stop_at is not None and step + 1 >= stop_at:
                distributed.barrier()
                return session.out_dir / "last.pt"
    return session.finish(cfg.steps)


def _train_epochs(config: RunConfig, data: TrainingData, model: DynaPruner, generator: torch.Generator,
                  progress: bool, distributed: Distributed = SINGLE_PROCESS,
                  distillation: Distillation | None = None) -> Path:
    """Epoch loop: each epoch the pruner selects windows (with loss weights), they are visited once
    in random order, and the per-window losses go back to the pruner. The learning rate follows
    warm-up, then a cosine over the fraction of epochs done (the number of steps depends on the
    selections). History entries carry ``train_seconds`` (optimisation and selection only, no
    validation) and ``samples`` (training samples — windows or patches — trained on so far); the final metrics add
    ``selection_seconds``, the pruner's own cost (scoring, selecting, recording losses).
    Under torchrun ``generator`` (same seed on every rank) drives selections and orders, and each
    rank crops and draws sparsities with its own generator; ``samples`` counts all ranks."""
    cfg = config.train
    position = {"progress": 0.0}
    factor = lambda s: (s + 1) / cfg.warmup_steps if s < cfg.warmup_steps else \
        0.5 * (1.0 + math.cos(math.pi * min(position["progress"], 1.0)))  # noqa: E731
    own = torch.Generator().manual_seed(distributed.seed(cfg.seed)) if distributed.active else generator
    session = _Session(config, data, model, own, factor, distributed, distillation)
    pool = training_samples(cfg, data.train)
    pruner = make_pruner(pool, cfg, cfg.epochs, generator)
    step, samples, train_seconds, selection_seconds, parts = 0, 0, 0.0, 0.0, {"task": float("nan")}
    bar = tqdm(range(cfg.epochs), disable=not progress or not distributed.main, desc="epochs")
    for epoch in bar:
        began = time.perf_counter()
        selection = pruner.select(epoch)
        selection_seconds += time.perf_counter() - began
        order = distributed.shard(torch.randperm(selection.size, generator=generator).numpy())
        for first in range(0, len(order), cfg.batch_size):
            chosen = order[first:first + cfg.batch_size]
            position["progress"] = (epoch + first / len(order)) / cfg.epochs
            batch = _batch_of(pool, selection.indices[chosen], cfg.crop, model.tile_size, own)
            parts = session.optimise(batch, torch.from_numpy(selection.weights[chosen]))
            observed = time.perf_counter()
            indices, losses = distributed.gather(selection.indices[chosen], parts["per_sample"])
            pruner.observe(indices, losses)
            selection_seconds += time.perf_counter() - observed
            step, samples = step + 1, samples + len(indices)
        train_seconds += time.perf_counter() - began
        bar.set_postfix(kept=f"{selection.size}/{len(pool)}", loss=f"{parts['task']:.4f}")
        if (epoch + 1) % cfg.validate_every_epochs == 0 or epoch + 1 == cfg.epochs:
            session.validate(step, parts, epoch=epoch + 1, train_seconds=train_seconds, samples=samples,
                             kept=selection.size)
    return session.finish(step, train_seconds=train_seconds, samples=samples, selection_seconds=selection_seconds)

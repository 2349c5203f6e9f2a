"""The lab: trains (or reuses) the checkpoints a suite needs and measures forecasters on test data.

Checkpoints live under ``<runs>/<data set>/<backbone>/<variant>/model.pt`` and are reused when
their stored configuration equals the one the suite asks for (MP checkpoints: when newer than
the dense and Dyna-Pruner checkpoints they derive from).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig, load_config
from ..data.registry import get_dataset, load_split
from ..data.series import Series
from ..data.windows import WindowDataset
from ..evaluate.report import cached_windows
from ..evaluate.runner import Operating, baseline_forecasts, model_forecasts, score
from ..evaluate.timing import Latency, batch1_latency
from ..model.checkpoint import Checkpoint, load_checkpoint
from ..predictor import Predictor
from ..train.mp_baseline import prune_and_finetune
from ..train.trainer import train
from .suite import Suite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trained:
    path: Path
    checkpoint: Checkpoint

    @property
    def train_seconds(self) -> float:
        return float(self.checkpoint.metrics.get("train_seconds") or 0.0)


def _comparable(config: RunConfig) -> dict:
    tree = config.model_dump(mode="json")
    tree["data"].pop("root")
    return tree


def _newer(start: str | None, *, than: Path) -> bool:
    """Whether the checkpoint a run started from (``train.init_from``) changed after ``than`` was written."""
    return start is not None and Path(start).is_file() and Path(start).stat().st_mtime > than.stat().st_mtime


class Lab:
    """Parameters: suite; runs : folder of cached checkpoints; data_root : the data sets (None: default)."""

    def __init__(self, suite: Suite, *, runs: str | Path, data_root: str | Path | None = None,
                 progress: bool = False) -> None:
        self.suite, self.runs, self.progress = suite, Path(runs), progress
        self.data_root = None if data_root is None else str(data_root)
        self._series: dict[str, Series] = {}
        self._windows: dict[tuple, WindowDataset] = {}

    def config(self, dataset: str, backbone: str, variant: str, *extra: str) -> RunConfig:
        """The run configuration of one variant: data set plan (its own overrides, then those for this
        backbone), backbone plan, then ``extra`` overrides."""
        plan, model = self.suite.datasets[dataset], self.suite.backbones[backbone]
        kwargs = {**model.kwargs, "tile_latent": plan.tile_latent}
        config = load_config(None, [
            f"data.name={dataset}", f"model.backbone={backbone}", f"model.backbone_kwargs={json.dumps(kwargs)}",
            f"train.validation_sparsity={self.suite.point}", *plan.overrides,
            *plan.backbone_overrides.get(backbone, ()), *extra,
            f"train.out_dir={self.runs / dataset / backbone / variant}"])
        steps = max(1, round(config.train.steps * model.steps_scale))
        return config.model_copy(update={"train": config.train.model_copy(update={"steps": steps}),
                                         "data": config.data.model_copy(update={"root": self.data_root})})

    def trained(self, config: RunConfig) -> Trained:
        """The checkpoint ``config`` trains: reused when its stored configuration is the same (and it
        is newer than the checkpoint it started from), else trained now."""
        path = Path(config.train.out_dir) / "model.pt"
        if path.is_file() and not _newer(config.train.init_from, than=path):
            checkpoint = load_checkpoint(path)
            if _comparable(checkpoint.config) == _comparable(config):
                log.info("reusing %s", path)
                return Trained(path, checkpoint)
        log.info("training %s (%d steps)", config.train.out_dir, config.train.steps)
        path = train(config, progress=self.progress)
        return Trained(path, load_checkpoint(path))

    def dense(self, dataset: str, backbone: str) -> Trained:
        """The combination's dense model (policy dense)."""
        return self.trained(self.config(dataset, backbone, "dense", "train.policy=dense"))

    def pruner(self, dataset: str, backbone: str, variant: str, *extra: str) -> Trained:
        """A Dyna-Pruner variant (the full model, a fixed point, an ablation). With ``dyna_start: dense``
        (the data set's, else the suite's) it starts from the dense model (trained first) and distils
        its forecast with weight ``distill_weight`` (:mod:`dyna_stream.train.teacher`)."""
        (origin, weight), start = self.suite.start_of(dataset), ()
        if origin == "dense":
            start = (f"train.init_from={self.dense(dataset, backbone).path}", f"train.distill_weight={weight}")
        return self.trained(self.config(dataset, backbone, variant, *start, *extra))

    def mp(self, dataset: str, backbone: str, dense: Trained, dyna: Trained, point: float) -> Trained:
        """L1 filter pruning of ``dense`` to the Dyna-Pruner's executed MACs at sd = sw = ``point``, fine-tuned."""
        out = self.runs / dataset / backbone / f"mp-{point:g}"
        path = out / "model.pt"
        newest_parent = max(dense.path.stat().st_mtime, dyna.path.stat().st_mtime)
        if not path.is_file() or path.stat().st_mtime < newest_parent:
            steps = max(1, round(dense.checkpoint.config.train.steps * self.suite.mp_steps_fraction))
            log.info("MP: pruning and fine-tuning %s for %d steps", dense.path, steps)
            path = prune_and_finetune(dense.path, dyna.path, sparsity=point, steps=steps,
                                      lr=dense.checkpoint.config.train.lr, out_dir=out, data_root=self.data_root,
                                      progress=self.progress)
        return Trained(path, load_checkpoint(path))

    def series(self, dataset: str) -> Series:
        """The test split (its first ``test_frames`` frames when the plan limits them)."""
        if dataset not in self._series:
            series = load_split(dataset, "test", self.data_root)
            frames = self.suite.datasets[dataset].test_frames
            limited = frames and series.slice(0, min(series.context_frames + frames, len(series)))   # history stays
            self._series[dataset] = limited or series
        return self._series[dataset]

    def windows(self, dataset: str, checkpoint: Checkpoint) -> WindowDataset:
        return cached_windows(get_dataset(dataset), self.series(dataset), checkpoint, self._windows)

    def measure(self, dataset: str, trained: Trained, operating: Operating, *, timed: bool = True) -> dict:
        """Test MSE/MAE (data units, pooled over valid cells and leads), executed GMACs per window and,
        when ``timed``, batch-1 latency (median and p95 ms, mask generator + backbone)."""
        spec, checkpoint = get_dataset(dataset), trained.checkpoint
        windows = self.windows(dataset, checkpoint)
        metrics = score(windows, model_forecasts(checkpoint, windows, operating), thresholds=spec.csi_thresholds,
                        data_range=windows.normaliser.data_range)
        row = {"mse": metrics["mse_mean"], "mae": metrics["mae_mean"], "gmacs": metrics["macs"] / 1e9,
               "data_sparsity": operating.data_sparsity, "model_sparsity": operating.model_sparsity}
        if timed:
            latency = self.latency(windows, checkpoint, operating)
            row.update(latency_ms=latency.median_ms, latency_p95_ms=latency.p95_ms)
        return row

    def baseline(self, dataset: str, method: str, like: Checkpoint) -> dict:
        """Test MSE/MAE of a classical forecast (persistence, advection, a seasonal copy) on the
        windows ``like`` is scored on."""
        spec = get_dataset(dataset)
        windows = self.windows(dataset, like)
        metrics = score(windows, baseline_forecasts(windows, method), thresholds=spec.csi_thresholds,
                        data_range=windows.normaliser.data_range)
        return {"mse": metrics["mse_mean"], "mae": metrics["mae_mean"]}

    def latency(self, windows: WindowDataset, checkpoint: Checkpoint, operating: Operating) -> Latency:
        predictor = Predictor(checkpoint, data_sparsity=operating.data_sparsity,
                              model_sparsity=operating.model_sparsity, policy=operating.policy,
                              engine=operating.engine, device=operating.device)
        item, size = windows[0], (windows.height, windows.width)
        return batch1_latency(lambda: predictor.run_normalised(item["frames"], item["fallback"], size).macs,
                              runs=self.suite.latency_runs, warmup=self.suite.latency_warmup)

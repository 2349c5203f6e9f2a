"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node=2``: trains a tiny model
on synthetic storms (step-based, or epoch-based with ST-Prune); each rank writes its final
in-memory parameters (DDP keeps them identical; BatchNorm running statistics stay per rank, and
rank 0's go into the checkpoint)."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from dyna_stream.data.registry import get_dataset  # noqa: E402
from dyna_stream.data.synthetic import moving_storms  # noqa: E402
from dyna_stream.model.checkpoint import build_model  # noqa: E402
from dyna_stream.train.distributed import from_environment  # noqa: E402
from dyna_stream.train.trainer import prepare_data, train  # noqa: E402

from conftest import tiny_config  # noqa: E402

out, mode = Path(sys.argv[1]), sys.argv[2]
schedule = {"steps": ["train.steps=6", "train.validate_every=3"],
            "st-prune": ["train.epochs=4", "train.validate_every_epochs=2", "train.sample_pruning=st-prune",
                         "train.prune_quantile=0.5", "train.keep_ratio=0.5"]}[mode]
config = tiny_config(out, *schedule, "train.threads=1", "train.select=last")
spec = get_dataset(config.data.name)
series = moving_storms(frames=20, height=32, width=32)
data = prepare_data(config, 8, train_series=series, val_series=series)
model = build_model(config.model, t_in=spec.t_in, t_out=spec.t_out, channels=1)
path = train(config, progress=False, data=data, init_model=model)
torch.save({"path": str(path), "parameters": dict(model.named_parameters())},
           out / f"rank{from_environment().rank}.pt")

"""Training, resuming, MP pruning and the evaluation report, end to end on tiny models."""
import json

import pytest
import torch

from dyna_stream.data.registry import get_dataset
from dyna_stream.data.synthetic import moving_storms
from dyna_stream.errors import ConfigError
from dyna_stream.evaluate.suite import run_evaluation
from dyna_stream.model.checkpoint import load_checkpoint
from dyna_stream.model.l1_pruning import filter_norms, l1_gates_for_budget, static_macs
from dyna_stream.train.mp_baseline import prune_and_finetune
from dyna_stream.train.trainer import prepare_data, train

from conftest import tiny_config


def synthetic_data(config):
    spec = get_dataset(config.data.name)
    series = moving_storms(frames=spec.t_in + spec.t_out + 4, height=40, width=40)
    return prepare_data(config, 8, train_series=series, val_series=series)


def test_training_writes_a_loadable_checkpoint_with_history(tmp_path):
    config = tiny_config(tmp_path, "train.select=last")
    path = train(config, progress=False, data=synthetic_data(config))
    checkpoint = load_checkpoint(path)
    assert checkpoint.step == 4 and [h["step"] for h in checkpoint.metrics["history"]] == [2, 4]
    assert checkpoint.metrics["train_seconds"] > 0
    assert (tmp_path / "run" / "last.pt").is_file()


@pytest.mark.parametrize("extra", [[], ["train.ema_decay=0.5"]], ids=["raw", "ema"])
def test_resumed_training_matches_an_uninterrupted_run(tmp_path, extra):
    straight = tiny_config(tmp_path / "a", "train.select=last", *extra)
    reference = load_checkpoint(train(straight, progress=False, data=synthetic_data(straight)))
    interrupted = tiny_config(tmp_path / "b", "train.select=last", *extra)
    assert train(interrupted, progress=False, data=synthetic_data(interrupted), stop_at=2).name == "last.pt"
    assert not (tmp_path / "b" / "run" / "model.pt").exists()
    resumed = load_checkpoint(train(interrupted, resume=tmp_path / "b" / "run" / "last.pt", progress=False,
                                    data=synthetic_data(interrupted)))
    assert resumed.step == 4
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, msg=name)


def test_a_moving_average_of_the_weights_is_what_is_validated_and_saved(tmp_path):
    """With train.ema_decay the checkpoint holds the average, and last.pt also the trained weights
    (to resume from): at decay d, the average after a step = d · the one before + (1 − d) · the
    weights after it."""
    config = tiny_config(tmp_path, "train.select=last", "train.ema_decay=0.75", "train.calibrate_norm=false",
                         "train.validate_every=1")
    data = synthetic_data(config)
    assert train(config, progress=False, data=data, stop_at=3).name == "last.pt"
    before = load_checkpoint(tmp_path / "run" / "last.pt")
    final = load_checkpoint(train(config, resume=tmp_path / "run" / "last.pt", progress=False, data=data))
    trained = load_checkpoint(tmp_path / "run" / "last.pt").training_state["model"]
    assert final.step == 4 and len(final.metrics["history"]) == 4
    averaged, previous = final.model.state_dict(), before.model.state_dict()
    moved = 0
    for name, value in averaged.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * previous[name] + 0.25 * trained[name], msg=name)
            moved += not torch.equal(value, trained[name])
    assert moved > 10, "the saved weights are the trained ones, not their average"

CUDA = torch.cuda.is_available()


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("loop", ["steps", "epochs, st-prune on patches"])
def test_training_on_the_gpu_tracks_the_cpu_run(tmp_path, loop):
    """Both loops, validation and norm calibration run on the GPU; the checkpoint loads on the CPU."""
    extra = [] if loop == "steps" else ["train.epochs=3", "train.sample_pruning=st-prune", "train.sample_unit=patch",
                                        "train.crop=16", "train.batch_size=8", "train.validate_every_epochs=3"]
    runs = {}
    for device in ("cpu", "cuda"):
        config = tiny_config(tmp_path / device, f"train.device={device}", *extra)
        runs[device] = load_checkpoint(train(config, progress=False, data=synthetic_data(config)))
    cpu, gpu = runs["cpu"], runs["cuda"]
    assert next(gpu.model.parameters()).device.type == "cpu" and gpu.metrics["norm_calibration"]
    last = [run.metrics["history"][-1] for run in (cpu, gpu)]
    assert last[0]["step"] == last[1]["step"] and last[0].get("samples") == last[1].get("samples")
    assert last[1]["val_mse"] == pytest.approx(last[0]["val_mse"], rel=0.1)
    if loop == "steps":                        # 4 Adam steps: every weight within 4 · lr of the CPU run's
        for name, value in cpu.model.state_dict().items():
            torch.testing.assert_close(gpu.model.state_dict()[name], value, rtol=0.05, atol=0.01, msg=name)


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA GPU")
def test_asking_for_a_gpu_without_one_says_so(tmp_path):
    config = tiny_config(tmp_path, "train.device=cuda")
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        train(config, progress=False, data=synthetic_data(config))


def test_l1_pruning_meets_the_budget_and_keeps_the_largest_filters(tiny_model):
    with torch.no_grad():
        for parameter in tiny_model.parameters():
            parameter.normal_()
    dense = static_macs(tiny_model, {}, 32, 32)
    gates = l1_gates_for_budget(tiny_model, dense * 0.25, 32, 32)
    pruned = static_macs(tiny_model, gates, 32, 32)
    assert dense * 0.1 < pruned <= dense * 0.25          # groups of 4-8 channels: the budget is met in coarse steps
    norms = filter_norms(tiny_model)
    for name, gate in gates.items():
        kept, dropped = norms[name][gate == 1], norms[name][gate == 0]
        assert dropped.numel() == 0 or kept.min() >= dropped.max()


@pytest.mark.slow
def test_real_radar_train_prune_and_report(tmp_path, data_root):
    runs = {}
    for policy in ("dyna", "dense"):
        config = tiny_config(tmp_path / policy, f"train.policy={policy}", f"data.root={data_root}")
        runs[policy] = train(config, progress=False)
    mp = prune_and_finetune(runs["dense"], runs["dyna"], sparsity=0.7, steps=2, lr=1e-3,
                            out_dir=tmp_path / "mp", data_root=str(data_root), progress=False)
    report_md = run_evaluation(runs["dyna"], dense=runs["dense"], mp=mp, sparsities=(0.7,),
                               data_root=data_root, out_dir=tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    labels = [row["label"] for row in report["rows"]]
    assert labels[:3] == ["persistence", "optical-flow advection", "dense SimVP"]
    assert any(label.startswith("MP") for label in labels) and "Dyna-Pruner sd=sw=0.7" in labels
    rows = {row["label"]: row for row in report["rows"]}
    assert rows["persistence"]["metrics"]["mse_mean"] == pytest.approx(234.1, abs=0.1)
    dyna = rows["Dyna-Pruner sd=sw=0.7"]
    assert dyna["macs_vs_dense_pct"] < 30 and len(dyna["metrics"]["csi@20"]) == 6
    assert (tmp_path / "report" / "importance.png").stat().st_size > 10_000
    assert rows["dense SimVP"]["metrics"]["kept_event_share"] == 1.0          # no data mask: every event cell
    assert 0.0 <= dyna["metrics"]["kept_event_share"] <= 1.0
    assert "kept_event_share" not in rows["persistence"]["metrics"]
    text = report_md.read_text()
    assert "| Dyna-Pruner sd=sw=0.7 |" in text and "CSI@40" in text and "events kept %" in text


def test_fixed_point_and_single_mask_training_draw_what_the_config_says(tmp_path, monkeypatch):
    from dyna_stream.model.dynapruner import DynaPruner
    from dyna_stream.train.trainer import validation_point

    config = tiny_config(tmp_path, "train.sparsity_range=[0.5, 0.5]", "train.model_sparsity_range=[0.0, 0.0]",
                         "train.validation_sparsity=0.5", "train.validation_model_sparsity=0.0",
                         "train.calibrate_norm=false")   # calibration runs its own points after training
    seen, forward = [], DynaPruner.forward

    def recording(self, *args, **kwargs):
        seen.append((kwargs["data_sparsity"], kwargs["model_sparsity"]))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(DynaPruner, "forward", recording)
    train(config, progress=False, data=synthetic_data(config))
    assert seen and set(seen) == {(0.5, 0.0)}
    point = validation_point(config)
    assert (point.policy, point.data_sparsity, point.model_sparsity) == ("dyna", 0.5, 0.0)


def test_intensity_weighted_objective_weighs_cells_by_their_truth():
    from dyna_stream.config import load_config
    from dyna_stream.data.normalise import Normaliser
    from dyna_stream.model.loss import MSE
    from dyna_stream.train.trainer import task_objective

    config = load_config(None, ["train.objective=mse+mae", "train.intensity_weights=[[20, 2], [30, 5]]"]).train
    normaliser = Normaliser(mean=(10.0,), std=(10.0,), low=-32.0, high=95.0, units="dBZ")
    objective = task_objective(config, normaliser)
    assert objective.mae and objective.thresholds == (1.0, 2.0) and objective.weights == (2.0, 5.0)
    target = torch.tensor([0.0, 1.0, 2.5, 0.0]).reshape(1, 1, 1, 1, 4)        # 10, 20, 35 dBZ, no data
    forecast = target - 1.0                                                   # every cell 1 unit low
    valid = torch.tensor([True, True, True, False]).reshape(1, 1, 1, 1, 4)
    assert objective.per_sample(forecast, target, valid).item() == pytest.approx((1 + 2 + 5) * 2 / (1 + 2 + 5))
    damped = target.clone()
    damped[..., 2] = 0.0                                                      # the storm cell painted as calm
    assert objective.per_sample(damped, target, valid) > 2 * MSE.per_sample(damped, target, valid)
    with pytest.raises(ConfigError, match="ascending"):
        load_config(None, ["train.intensity_weights=[[30, 2], [20, 5]]"])

"""Starting a Dyna-Pruner from a dense checkpoint and distilling its dense forecast."""
import pytest
import torch
from test_training import synthetic_data

from dyna_stream.errors import ConfigError
from dyna_stream.model.checkpoint import load_checkpoint
from dyna_stream.model.dynapruner import DynaPruner, Prediction
from dyna_stream.model.loss import MSE
from dyna_stream.train.teacher import Distillation, start_from
from dyna_stream.train.trainer import train

from conftest import tiny_config


@pytest.fixture
def dense_checkpoint(tmp_path):
    config = tiny_config(tmp_path / "dense", "train.policy=dense")
    return train(config, progress=False, data=synthetic_data(config))


def test_start_from_copies_every_matching_weight_and_freezes_the_teacher(tmp_path, dense_checkpoint):
    dense = load_checkpoint(dense_checkpoint)
    student = load_checkpoint(dense_checkpoint).model
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(1.0)
    teacher = start_from(student, dense_checkpoint, dataset=dense.dataset)
    for name, value in dense.model.state_dict().items():
        torch.testing.assert_close(student.state_dict()[name], value, msg=name)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())


def test_start_from_refuses_another_data_set(dense_checkpoint):
    student = load_checkpoint(dense_checkpoint).model
    with pytest.raises(ConfigError, match="trained on radar-fmi, this run is on taxi-nyc"):
        start_from(student, dense_checkpoint, dataset="taxi-nyc")


def test_distillation_without_a_teacher_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="distill_weight > 0 distils a dense forecast: set train.init_from"):
        tiny_config(tmp_path, "train.distill_weight=1.0")
    assert tiny_config(tmp_path, "train.distill_weight=1.0", "train.sandwich=true").train.sandwich
    with pytest.raises(ConfigError, match="sandwich .* needs policy dyna, not 'dense'"):
        tiny_config(tmp_path, "train.sandwich=true", "train.policy=dense")


def test_distillation_term_is_zero_at_the_teacher_and_grows_away_from_it(dense_checkpoint):
    teacher = load_checkpoint(dense_checkpoint).model
    config = tiny_config(dense_checkpoint.parent, "train.policy=dense")
    item = synthetic_data(config).val[0]
    batch = {key: value[None] for key, value in item.items()}
    with torch.no_grad():
        soft = teacher(batch["frames"], batch["fallback"], coverage=batch["coverage"], policy="dense").forecast
    distillation = Distillation(teacher, weight=0.5)
    assert distillation.loss(soft, batch, MSE).item() == pytest.approx(0.0, abs=1e-10)
    assert distillation.loss(soft + 2.0, batch, MSE).item() == pytest.approx(0.5 * 4.0, rel=1e-5)


def test_a_run_started_from_the_dense_model_distils_at_every_step(tmp_path, dense_checkpoint, monkeypatch):
    seen, loss = [], Distillation.loss

    def recording(self, forecast, batch, objective, dense=None):
        value = loss(self, forecast, batch, objective, dense)
        seen.append((value.item(), forecast.requires_grad))
        return value

    monkeypatch.setattr(Distillation, "loss", recording)
    config = tiny_config(tmp_path / "kd", f"train.init_from={dense_checkpoint}", "train.distill_weight=1.0",
                         "train.calibrate_norm=false")
    student = load_checkpoint(train(config, progress=False, data=synthetic_data(config)))
    assert len(seen) == config.train.steps and all(value > 0 and grad for value, grad in seen)
    assert student.config.train.init_from == str(dense_checkpoint)


def test_in_place_distillation_targets_the_dense_path_and_does_not_back_propagate_into_it():
    forecast = torch.zeros(1, 2, 1, 4, 4, requires_grad=True)
    dense_forecast = torch.ones(1, 2, 1, 4, 4, requires_grad=True)
    dense = Prediction(dense_forecast, None, None, None, None)
    batch = {"valid": torch.ones(1, 2, 1, 4, 4, dtype=torch.bool)}
    distillation = Distillation(None, weight=2.0)
    value = distillation.loss(forecast, batch, MSE, dense=dense)
    assert value.item() == pytest.approx(2.0)
    value.backward()
    assert forecast.grad is not None and dense_forecast.grad is None
    with pytest.raises(ValueError, match="needs the step's dense-path prediction"):
        distillation.loss(forecast, batch, MSE)


def test_sandwich_training_runs_the_dense_path_besides_each_sampled_point(tmp_path, monkeypatch):
    seen, forward = [], DynaPruner.forward

    def recording(self, *args, **kwargs):
        if self.training:
            seen.append((kwargs.get("data_sparsity", 0.0), kwargs.get("model_sparsity", 0.0)))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(DynaPruner, "forward", recording)
    config = tiny_config(tmp_path, "train.sandwich=true", "train.distill_weight=1.0", "train.calibrate_norm=false")
    train(config, progress=False, data=synthetic_data(config))
    sampled, dense = seen[0::2], seen[1::2]
    assert len(seen) == 2 * config.train.steps and set(dense) == {(0.0, 0.0)}
    assert all(config.train.sparsity_range[0] <= sd <= config.train.sparsity_range[1] for sd, _ in sampled)

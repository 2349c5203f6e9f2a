"""The experiment runner: suites are validated, every table is trained and measured for real, the
results land in Markdown + JSON + plots, and checkpoints are reused on a second run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dyna_stream.config import load_config
from dyna_stream.data.normalise import Normaliser
from dyna_stream.errors import ConfigError
from dyna_stream.experiments.lab import Lab, Trained
from dyna_stream.experiments.run import BEGIN, END, run_suite
from dyna_stream.experiments.suite import bundled_suites, load_suite, restricted
from dyna_stream.experiments.tables import table_point
from dyna_stream.model.checkpoint import Checkpoint
from dyna_stream.model.operating_point import DefaultPoint

TINY_SUITE = {
    "name": "smoke",
    "point": 0.5,
    "use_default_point": False,       # the tiny models' default points vary; table_point has its own test
    "pareto_points": [0.5, 0.7],
    "mp_steps_fraction": 0.5,
    "datasets": {"storms": {"tile_latent": 1, "overrides": [
        "train.steps=4", "train.batch_size=2", "train.crop=32", "train.warmup_steps=1", "train.validate_every=2"]}},
    "backbones": {"simvp": {"kwargs": {"width": 4, "latent": 4, "hidden": 4, "blocks": 1}},
                  "convlstm": {"kwargs": {"width": 4, "hidden": 4, "layers": 1, "kernel": 3}, "steps_scale": 0.5}},
    "sensitivity": {"dataset": "storms", "backbone": "simvp"},
    "sensitivity_points": [[0.5, 0.5], [0.7, 0.5]],
    "ablation": {"dataset": "storms", "backbone": "simvp"},
    "latency_runs": 2,
    "latency_warmup": 0,
}


def _write_suite(tmp_path, tree: dict):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def test_bundled_suites_load():
    assert {"paper", "quick"} <= set(bundled_suites())
    paper = load_suite("paper")
    assert set(paper.backbones) == {"simvp", "tau", "convlstm"}
    assert set(paper.datasets) == {"radar-fmi", "taxi-nyc", "era5-t2m"}


@pytest.mark.parametrize("change, message", [
    ({"backbones": {"unet": {}}}, "unknown backbone(s) ['unet']; choose from ['convlstm', 'simvp', 'tau']"),
    ({"datasets": {"mnist": {}}}, "unknown data set(s) ['mnist']; choose from"),
    ({"latency_rounds": 3}, "latency_rounds"),
    ({"ablation": {"dataset": "storms", "backbone": "tau"}}, "ablation runs on storms/tau, which the suite does not"),
])
def test_bad_suites_name_the_problem(tmp_path, storms, change, message):
    with pytest.raises(ConfigError, match=None) as error:
        load_suite(_write_suite(tmp_path, {**TINY_SUITE, **change}))
    assert message in str(error.value)


def test_tables_run_at_the_checkpoints_default_point_when_the_suite_says_so(tiny_model):
    checkpoint = Checkpoint(tiny_model, load_config(None), Normaliser((0.0,), (1.0,), "dBZ", -32.0, 60.0),
                            "radar-fmi", 3, 2, -32.0)
    trained = Trained(Path("model.pt"), checkpoint)
    paper = load_suite("paper")
    assert paper.use_default_point and table_point(Lab(paper, runs="runs"), trained) == paper.point   # none recorded
    checkpoint.default_point = DefaultPoint(0.9, 0.9, [[0.0, 1.0], [0.9, 1.01]])
    assert table_point(Lab(paper, runs="runs"), trained) == 0.9
    fixed = paper.model_copy(update={"use_default_point": False})
    assert table_point(Lab(fixed, runs="runs"), trained) == paper.point
    checkpoint.default_point = DefaultPoint(0.9, 0.5, [])          # Table I runs sd = sw only
    assert table_point(Lab(paper, runs="runs"), trained) == paper.point


def test_unknown_suite_lists_the_bundled_ones():
    with pytest.raises(ConfigError, match="neither a file nor a bundled suite .*paper"):
        load_suite("papers")


def test_suite_end_to_end_then_reused(tmp_path, storms, caplog):
    suite = load_suite(_write_suite(tmp_path, TINY_SUITE))
    publish = tmp_path / "docs" / "results.md"
    publish.parent.mkdir()
    publish.write_text("# Results\n\nearlier sections\n")
    out = tmp_path / "docs" / "experiments"
    path = run_suite(suite, runs=tmp_path / "runs", out=out, data_root=storms, publish=publish)

    results = json.loads((out / "results.json").read_text())
    assert [(c["dataset"], c["backbone"]) for c in results["table1"]] == [("storms", "simvp"), ("storms", "convlstm")]
    for combo in results["table1"]:
        kinds = [r["kind"] for r in combo["rows"]]
        assert kinds == ["dense", "MP", "random", "dyna"]
        rows = {r["kind"]: r for r in combo["rows"]}
        assert rows["dyna"]["gmacs"] < rows["dense"]["gmacs"] and all(r["latency_ms"] > 0 for r in combo["rows"])
        assert rows["MP"]["gmacs"] <= rows["dyna"]["gmacs"] * 1.000001      # L1 pruned to the same budget
        assert [p["data_sparsity"] for p in combo["pareto"]] == [0.7]
    for combo in results["table2"]:
        dyna = next(r for r in combo["rows"] if r["kind"] == "dyna")
        assert set(dyna["noise"]) == {"0.01", "0.05"} and set(dyna["mask_failure"]) == {"0.05", "0.1"}
        assert dyna["noise"]["0.05"] != dyna["clean"]
    assert [(r["data_sparsity"], r["model_sparsity"]) for r in results["table3"]["rows"]] == [(0.5, 0.5), (0.7, 0.5)]
    fixed = results["table3"]["rows"][1]["fixed"]
    # executed MACs: engine auto times both engines and canvas layers execute whole canvases, so
    # two checkpoints at one point agree only up to that overhead
    assert fixed["gmacs"] == pytest.approx(results["table3"]["rows"][1]["any"]["gmacs"], rel=0.15)
    labels = [r["label"] for r in results["table4"]["rows"]]
    assert labels == ["dense", "DP-only", "MP-only", "independent DP+MP (no shared S)", "full Dyna-Pruner"]
    dp_only = results["table4"]["rows"][1]
    assert (dp_only["data_sparsity"], dp_only["model_sparsity"]) == (0.5, 0.0)

    text = path.read_text()
    for heading in ("## Goals", "## Table I", "## Table II", "## Table III", "## Table IV", "pareto_storms.png"):
        assert heading in text
    assert (out / "pareto_storms.png").stat().st_size > 1000
    trained = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.pt")}
    assert len(trained) == 2 * 3 + 2 + 3          # per backbone dense/dyna/MP, 2 fixed points, 3 ablations

    caplog.set_level("INFO", logger="dyna_stream")
    run_suite(suite, runs=tmp_path / "runs", out=out, data_root=storms, publish=publish)
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.pt")} == trained
    assert "training" not in " ".join(r.message for r in caplog.records if r.name.endswith("lab"))
    published = publish.read_text()
    assert published.startswith("# Results\n\nearlier sections\n")
    assert published.count(BEGIN) == 1 and published.count(END) == 1
    assert "](experiments/pareto_storms.png)" in published


@pytest.mark.slow
def test_bundled_quick_suite_on_real_data(tmp_path, data_root):
    suite = load_suite("quick")
    path = run_suite(suite, runs=tmp_path / "runs", out=tmp_path / "out", data_root=data_root)
    results = json.loads(path.with_suffix(".json").read_text())
    assert len(results["table1"]) == len(suite.datasets) * len(suite.backbones)
    for combo in results["table1"]:
        assert all(r["mse"] > 0 and r["latency_ms"] > 0 for r in combo["rows"])


def test_cli_refuses_a_bad_suite_naming_the_key(tmp_path, caplog):
    from dyna_stream.cli import main

    bad = _write_suite(tmp_path, {**TINY_SUITE, "datasets": {"radar": {}}})
    assert main(["-q", "experiments", "--suite", str(bad), "--runs", str(tmp_path / "runs")]) == 2
    assert "datasets" in caplog.text and "unknown data set(s) ['radar']" in caplog.text
    assert not (tmp_path / "runs").exists()


def test_a_suite_runs_on_some_of_its_data_sets_without_the_studies_elsewhere():
    paper = load_suite("paper")
    studied = paper.ablation.dataset
    others = [name for name in paper.datasets if name != studied]
    elsewhere = restricted(paper, others)
    assert list(elsewhere.datasets) == others and set(elsewhere.backbones) == set(paper.backbones)
    assert elsewhere.sensitivity is None and elsewhere.ablation is None
    assert restricted(paper, [studied]).ablation == paper.ablation
    with pytest.raises(ConfigError, match="no data set radar-knmi"):
        restricted(paper, ["radar-knmi"])


def test_dyna_start_dense_trains_the_dense_model_first_and_starts_every_pruner_from_it(tmp_path, storms, caplog):
    tree = {**TINY_SUITE, "backbones": {"simvp": TINY_SUITE["backbones"]["simvp"]}, "dyna_start": "dense",
            "distill_weight": 0.5}
    lab = Lab(load_suite(_write_suite(tmp_path, tree)), runs=tmp_path / "runs", data_root=storms)
    dyna = lab.pruner("storms", "simvp", "dyna")
    dense = tmp_path / "runs" / "storms" / "simvp" / "dense" / "model.pt"
    assert dense.is_file() and dyna.checkpoint.config.train.init_from == str(dense)
    assert dyna.checkpoint.config.train.distill_weight == 0.5
    caplog.clear()
    with caplog.at_level("INFO", logger="dyna_stream.experiments.lab"):
        lab.pruner("storms", "simvp", "dyna")
    assert f"reusing {dyna.path}" in caplog.text
    dense.touch()                                   # the dense model changed: what started from it is stale
    caplog.clear()
    with caplog.at_level("INFO", logger="dyna_stream.experiments.lab"):
        lab.pruner("storms", "simvp", "dyna")
    assert "training" in caplog.text and str(dyna.path.parent) in caplog.text


def test_a_data_set_can_start_its_pruners_from_dense_while_the_suite_starts_from_scratch(tmp_path, storms):
    storms_plan = {**TINY_SUITE["datasets"]["storms"], "dyna_start": "dense", "distill_weight": 0.0}
    tree = {**TINY_SUITE, "backbones": {"simvp": TINY_SUITE["backbones"]["simvp"]}, "datasets": {"storms": storms_plan}}
    suite = load_suite(_write_suite(tmp_path, tree))
    assert suite.dyna_start == "scratch"
    dyna = Lab(suite, runs=tmp_path / "runs", data_root=storms).pruner("storms", "simvp", "dyna")
    assert dyna.checkpoint.config.train.init_from == str(tmp_path / "runs" / "storms" / "simvp" / "dense" / "model.pt")
    assert dyna.checkpoint.config.train.distill_weight == 0.0


def test_a_data_set_can_override_one_backbone_only(tmp_path, storms):
    """The coarse path's context on SimVP (ConvLSTM refuses it): overrides for one backbone of one data set."""
    storms_plan = {**TINY_SUITE["datasets"]["storms"], "backbone_overrides": {"simvp": ["model.coarse.context=2"]}}
    suite = load_suite(_write_suite(tmp_path, {**TINY_SUITE, "datasets": {"storms": storms_plan}}))
    lab = Lab(suite, runs=tmp_path / "runs", data_root=storms)
    assert lab.config("storms", "simvp", "dense").model.coarse.context == 2
    assert lab.config("storms", "convlstm", "dense").model.coarse.context == 0
    bad = {**storms_plan, "backbone_overrides": {"unet": []}}
    with pytest.raises(ConfigError, match=r"unknown backbone\(s\) \['unet'\]"):
        load_suite(_write_suite(tmp_path, {**TINY_SUITE, "datasets": {"storms": bad}}))

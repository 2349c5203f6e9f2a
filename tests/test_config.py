"""Configuration: validated at load, overridable, errors name the field."""
import pytest

from dyna_stream.config import load_config
from dyna_stream.errors import ConfigError


def test_shipped_configs_load():
    from dyna_stream.config import NodeConfig, RunConfig

    from conftest import REPO
    # nowcast.yaml holds ROS 2 parameters; tests/ros/test_package.py checks it against the node
    paths = sorted(p for p in (REPO / "configs").glob("*.yaml") if p.stem != "nowcast")
    assert len(paths) >= 3
    for path in paths:
        load_config(path, schema=NodeConfig if path.stem.startswith("node") else RunConfig)


def test_overrides_parse_yaml_values():
    config = load_config(None, ["train.steps=12", "train.sparsity_range=[0.2, 0.8]",
                                "model.backbone_kwargs={width: 8}"])
    assert config.train.steps == 12 and config.train.sparsity_range == (0.2, 0.8)
    assert config.model.backbone_kwargs == {"width": 8}


@pytest.mark.parametrize("override, fragment", [
    ("train.steps=0", "steps"),
    ("train.sparsity_range=[0.9, 0.3]", "sparsity_range"),
    ("train.lr=-1", "lr"),
    ("model.gate_mode=soft", "gate_mode"),
    ("train.typo=1", "typo"),
    ("steps", "section.key=value"),
])
def test_bad_values_are_refused_naming_the_field(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, [override])


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")

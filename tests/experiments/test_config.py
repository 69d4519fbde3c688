"""Study configurations: defaults, TOML files, and errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from curvsketch.experiments.config import ConfigError, StudyConfig, config_from_dict, load_config
from curvsketch.experiments.presets import preset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_are_the_paper_mnist_setting():
    c = StudyConfig().validate()
    assert (c.model.name, c.train.lr, c.train.batch_size) == ("paper_mlp", 0.3, 500)
    assert (c.sketch.outer, c.sketch.inner) == (355, 710)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_bundled_configs_load(path):
    assert load_config(path).name == path.stem


def test_presets():
    assert preset("demo").hessian.steps == (0, 100, 250, 500, 1000)
    assert preset("quick").hessian.exact == "false"
    with pytest.raises(KeyError, match="known"):
        preset("nope")


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown key sketch\.'outr'; did you mean 'outer'"):
        config_from_dict({"sketch": {"outr": 3}})
    with pytest.raises(ConfigError, match=r"did you mean \[train\]"):
        config_from_dict({"trian": {}})


def test_bad_values_name_the_fix():
    with pytest.raises(ConfigError, match=r"hessian\.kind"):
        config_from_dict({"hessian": {"kind": "fisher"}})
    with pytest.raises(ConfigError, match=r"raise train\.steps"):
        config_from_dict({"train": {"steps": 10}, "hessian": {"steps": [0, 20]}})
    with pytest.raises(ConfigError, match="inner >= outer"):
        config_from_dict({"sketch": {"outer": 10, "inner": 5}})
    with pytest.raises(ConfigError, match=r"sketch\.recovery = 'lanczos' is not valid.*krylov"):
        config_from_dict({"sketch": {"recovery": "lanczos"}})
    with pytest.raises(ConfigError, match=r"needs sketch\.recovery = 'hmt'"):
        config_from_dict({"sketch": {"recovery": "krylov", "power_iters": 1}})
    assert config_from_dict({"sketch": {"recovery": "krylov"}}).sketch.recovery == "krylov"


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(FileNotFoundError, match="configs/"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nname=")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
